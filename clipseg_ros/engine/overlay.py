"""A colour overlay of a label image on the camera image, for people (rviz, PNG files).

Each label's pixels are tinted and outlined in its colour; a legend (a swatch and the prompt per label, on a
dark backdrop) sits in the corner that covers the fewest labelled pixels. Text, swatches and lines scale with
the image's size, so the legend reads the same on a 96-pixel thumbnail and a 4K frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Distinct, colour-blind-friendly colours (Okabe-Ito), RGB; label k uses PALETTE[(k - 1) % len].
PALETTE = np.array(
    [
        (230, 159, 0),
        (86, 180, 233),
        (0, 158, 115),
        (240, 228, 66),
        (0, 114, 178),
        (213, 94, 0),
        (204, 121, 167),
        (255, 255, 255),
    ],
    dtype=np.uint8,
)
FONT = cv2.FONT_HERSHEY_SIMPLEX
BACKDROP = (24, 24, 24)
BACKDROP_ALPHA = 0.75  # what lies under the legend still shows through a little
MIN_SCALE = 0.25  # Hershey glyphs about 6 pixels high: the smallest still legible
SPECK_FRACTION = 0.002  # blobs smaller than this share of the image get neither outline nor tag
_OPEN_KERNEL = np.ones((3, 3), np.uint8)


def label_colors(count: int) -> np.ndarray:
    """RGB colour of labels 1..count, shape (count, 3)."""
    return PALETTE[np.arange(count) % len(PALETTE)]


def text_scale(image: np.ndarray) -> float:
    """Font scale for text on `image`: about 1/30 of its shorter side per line, never unreadably small."""
    return max(0.35, min(image.shape[:2]) / 700)


def render_overlay(
    image: np.ndarray,
    label_image: np.ndarray,
    labels: list[str],
    alpha: float = 0.5,
) -> np.ndarray:
    """RGB image with each label's pixels tinted and outlined in its colour, and a legend.

    `label_image` holds 0 for background and k for labels[k - 1].
    """
    if image.shape[:2] != label_image.shape:
        raise ValueError(f"label image {label_image.shape} does not match image {image.shape[:2]}")
    colors = label_colors(len(labels))
    lut = np.zeros((256, 3), np.uint8)
    lut[1 : len(labels) + 1] = colors
    tint = lut[label_image]
    hit = (label_image > 0)[..., None]
    blended = image.astype(np.float32) * (1 - alpha) + tint.astype(np.float32) * alpha
    out = np.ascontiguousarray(np.where(hit, blended, image.astype(np.float32)).astype(np.uint8))
    line = max(1, round(text_scale(out) * 2))
    speck = label_image.size * SPECK_FRACTION
    tags = []
    counts = np.bincount(label_image.ravel(), minlength=len(labels) + 1)
    for k in np.flatnonzero(counts[1 : len(labels) + 1] >= speck) + 1:
        # Specks stay tinted only: a noisy mask's thousands of outlines would hide the image (and take the node
        # a tenth of a second a frame to find and draw), and a tag would hide a speck. Opening drops the
        # pixel-sized ones before the contours are traced.
        region = cv2.morphologyEx((label_image == k).astype(np.uint8), cv2.MORPH_OPEN, _OPEN_KERNEL)
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        areas = np.array([cv2.contourArea(c) for c in contours])
        large = [c for c, area in zip(contours, areas, strict=True) if area >= speck]
        if not large:
            continue
        cv2.drawContours(out, large, -1, colors[k - 1].tolist(), line, cv2.LINE_AA)
        moments = cv2.moments(contours[int(np.argmax(areas))])
        centre = (moments["m10"] / moments["m00"], moments["m01"] / moments["m00"])
        tags.append((labels[k - 1], colors[k - 1], centre))
    if labels:
        draw_legend(out, labels, colors, label_image > 0)
    for label, color, centre in tags:  # over the legend too: a tag names what is under it, wherever that is
        draw_tag(out, label, color, centre)
    return out


def draw_tracks(out: np.ndarray, tracks: Sequence[tuple[int, int, Sequence[tuple[float, float]]]]) -> None:
    """Each tracked object's id ("#7") at its newest position and its recent path as a line, in its prompt's
    colour; `tracks`: (track id, label index (0-based), pixel centroids oldest first) per object."""
    line = max(1, round(text_scale(out) * 2))
    for track_id, label_index, trail in tracks:
        if not trail:
            continue
        color = PALETTE[label_index % len(PALETTE)]
        points = np.round(np.asarray(trail, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [points], False, color.tolist(), line, cv2.LINE_AA)
        x, y = trail[-1]
        # Below the centre, where the prompt's own tag (at the centre of its largest region) does not sit.
        draw_tag(out, f"#{track_id}", color, (x, y + text_scale(out) * 30))


def draw_tag(out: np.ndarray, label: str, color: np.ndarray, centre: tuple[float, float]) -> None:
    """The label written at `centre` on a small backdrop edged in its colour: which prompt a mask answers is
    read off the mask itself (the legend's colours can clash with the objects' own)."""
    scale = text_scale(out) * 0.85
    thickness = max(1, round(scale * 2))
    (text_w, text_h), baseline = cv2.getTextSize(label, FONT, scale, thickness)
    pad = max(2, round(4 * scale))
    height, width = out.shape[:2]
    cx, cy = centre
    x0 = int(np.clip(cx - text_w / 2 - pad, 0, max(0, width - text_w - 2 * pad)))
    y0 = int(np.clip(cy - (text_h + baseline) / 2 - pad, 0, max(0, height - text_h - baseline - 2 * pad)))
    x1, y1 = x0 + text_w + 2 * pad, y0 + text_h + baseline + 2 * pad
    box = out[y0:y1, x0:x1]
    box[:] = (box * (1 - BACKDROP_ALPHA) + np.asarray(BACKDROP) * BACKDROP_ALPHA).astype(np.uint8)
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), color.tolist(), max(1, thickness - 1))
    cv2.putText(out, label, (x0 + pad, y0 + pad + text_h), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def draw_legend(out: np.ndarray, labels: list[str], colors: np.ndarray, occupied: np.ndarray) -> None:
    """A swatch and a name per label on a backdrop, in the corner of `out` where `occupied` is least true."""
    height, width = out.shape[:2]
    scale = text_scale(out)
    widest = max(labels, key=len)
    for _ in range(4):  # a legend wider or taller than a small image shrinks until it fits
        thickness = max(1, round(scale * 2))
        (_, text_h), baseline = cv2.getTextSize("Ag", FONT, scale, thickness)
        row = text_h + baseline + max(2, round(6 * scale))
        pad = max(2, round(6 * scale))
        swatch = text_h + baseline
        box_w = pad * 3 + swatch + cv2.getTextSize(widest, FONT, scale, thickness)[0][0]
        box_h = pad * 2 + row * len(labels)
        fit = min(width / box_w, height / box_h)
        if fit >= 1 or scale <= MIN_SCALE:
            break
        scale = max(MIN_SCALE, scale * fit)
    box_w, box_h = min(width, box_w), min(height, box_h)
    corners = [(0, 0), (width - box_w, 0), (0, height - box_h), (width - box_w, height - box_h)]
    x0, y0 = min(corners, key=lambda c: int(occupied[c[1] : c[1] + box_h, c[0] : c[0] + box_w].sum()))
    region = out[y0 : y0 + box_h, x0 : x0 + box_w]
    region[:] = (region * (1 - BACKDROP_ALPHA) + np.asarray(BACKDROP) * BACKDROP_ALPHA).astype(np.uint8)
    for k, (label, color) in enumerate(zip(labels, colors, strict=True)):
        top = y0 + pad + k * row
        cv2.rectangle(out, (x0 + pad, top), (x0 + pad + swatch, top + swatch), color.tolist(), -1)
        cv2.rectangle(out, (x0 + pad, top), (x0 + pad + swatch, top + swatch), (255, 255, 255), 1)
        org = (x0 + 2 * pad + swatch, top + text_h)
        cv2.putText(out, label, org, FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def with_caption(rgb: np.ndarray, lines: list[str], color: tuple[int, int, int]) -> np.ndarray:
    """A band of `color` across the bottom with `lines` in white, wrapped to the image's width (the legend
    sits in a corner, the band below everything): for notes a picture must carry wherever it travels."""
    scale = text_scale(rgb) * 0.9
    thickness = max(1, round(scale * 2))
    pad = max(3, round(6 * scale))
    wrapped = [part for line in lines for part in _wrap(line, rgb.shape[1] - 2 * pad, scale, thickness)]
    (_, text_h), baseline = cv2.getTextSize("Ag", FONT, scale, thickness)
    row = text_h + baseline + pad // 2
    band = pad * 2 + row * len(wrapped)
    out = np.concatenate([rgb, np.empty((band, rgb.shape[1], 3), np.uint8)], axis=0)
    out[rgb.shape[0] :] = color
    for k, text in enumerate(wrapped):
        org = (pad, rgb.shape[0] + pad + k * row + text_h)
        cv2.putText(out, text, org, FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def _wrap(text: str, width: int, scale: float, thickness: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(candidate, FONT, scale, thickness)[0][0] <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines
