"""A colour overlay of a label image on the camera image, for people (rviz, PNG files)."""

from __future__ import annotations

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


def label_colors(count: int) -> np.ndarray:
    """RGB colour of labels 1..count, shape (count, 3)."""
    return PALETTE[np.arange(count) % len(PALETTE)]


def render_overlay(
    image: np.ndarray,
    label_image: np.ndarray,
    labels: list[str],
    alpha: float = 0.5,
) -> np.ndarray:
    """RGB image with each label's pixels tinted in its colour, and a legend.

    `label_image` holds 0 for background and k for labels[k - 1].
    """
    if image.shape[:2] != label_image.shape:
        raise ValueError(f"label image {label_image.shape} does not match image {image.shape[:2]}")
    lut = np.zeros((256, 3), np.uint8)
    lut[1 : len(labels) + 1] = label_colors(len(labels))
    tint = lut[label_image]
    hit = (label_image > 0)[..., None]
    blended = image.astype(np.float32) * (1 - alpha) + tint.astype(np.float32) * alpha
    out = np.where(hit, blended, image.astype(np.float32)).astype(np.uint8)
    scale = max(0.4, min(out.shape[:2]) / 600)
    thickness = max(1, round(scale * 2))
    line = round(22 * scale)
    for k, (label, color) in enumerate(zip(labels, label_colors(len(labels)), strict=True)):
        y = line * (k + 1)
        cv2.putText(out, label, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.putText(out, label, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color.tolist(), thickness, cv2.LINE_AA)
    return out
