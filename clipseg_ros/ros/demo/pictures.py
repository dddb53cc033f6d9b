"""The demo's pictures drawn here rather than by the node: instances with their 3D, a visual prompt beside what
the node found, a service answer's label image."""

from __future__ import annotations

import cv2
import numpy as np

from clipseg_ros.engine.overlay import draw_tag, label_colors, text_scale
from clipseg_ros.ros.image_codec import image_to_numpy


def draw_instances(rgb: np.ndarray, segmentation) -> np.ndarray:
    """The frame with each instance's pixel box in its label's colour, and on the instance's pixel centroid (on
    the object itself: tags there do not collide, boxes can) its label over its 3D centroid."""
    out = rgb.copy()
    colours = label_colors(len(segmentation.labels))
    thickness = max(1, round(text_scale(out) * 3))
    for instance in segmentation.instances:
        box, colour = instance.bbox, colours[instance.label_index]
        x0, y0 = box.x_offset, box.y_offset
        cv2.rectangle(out, (x0, y0), (x0 + box.width - 1, y0 + box.height - 1), colour.tolist(), thickness)
    line = 26 * text_scale(out)
    placed: list[tuple[float, float]] = []
    for instance in sorted(segmentation.instances, key=lambda i: -i.score_max):
        colour, cx, cy = colours[instance.label_index], instance.centroid_x, instance.centroid_y
        # Two instances on one object (a prompt marking another prompt's shape): the weaker one's tags below.
        while any(abs(cy - y) < 2 * line and abs(cx - x) < 8 * line for x, y in placed):
            cy += 2 * line
        placed.append((cx, cy))
        draw_tag(out, f"{instance.label} {instance.score_max:.2f}", colour, (cx, cy - line / 2))
        c = instance.centroid_3d
        where = f"({c.x:.2f}, {c.y:.2f}, {c.z:.2f}) m" if instance.has_3d else "no 3D"
        draw_tag(out, where, colour, (cx, cy + line / 2))
    return out


def cut_out(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The support as a person reads it: the shape in its colours, the rest of the scene dimmed."""
    dimmed = (rgb * 0.25).astype(np.uint8)
    return np.where(mask[..., None] > 0, rgb, dimmed)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """What was shown and what the node found, titled."""
    return titled_row([left, right], ["visual prompt (from another scene)", "what the node found"])


def titled_row(images: list[np.ndarray], titles: list[str]) -> np.ndarray:
    """Images of one height side by side with a title over each."""
    scale = text_scale(images[0])
    band = round(34 * scale)
    panels = []
    for image, title in zip(images, titles, strict=True):
        top = np.full((band, image.shape[1], 3), 24, np.uint8)
        cv2.putText(top, title, (6, band - round(10 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    max(1, round(scale * 2)), cv2.LINE_AA)
        panels.append(np.concatenate([top, image], axis=0))
    gap = np.full((panels[0].shape[0], 8, 3), 255, np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.concatenate(row, axis=1)


def label_image(response) -> np.ndarray:
    """0 background, k = prompt k where it is the likeliest above the mask threshold (as ~/label)."""
    probabilities = np.stack([image_to_numpy(p) for p in response.probabilities])
    masks = np.stack([image_to_numpy(m) > 0 for m in response.masks])
    return np.where(masks.any(axis=0), probabilities.argmax(axis=0) + 1, 0).astype(np.uint8)
