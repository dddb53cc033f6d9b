"""Image and mask files as the engine takes them (RGB uint8, bool masks)."""

from __future__ import annotations

import os

import cv2
import numpy as np


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; grey and alpha images are converted."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # always 3 channels, BGR
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}: missing, unreadable or not an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask file as (H, W) bool: any non-zero value is the object (0/255 and 0/1 masks alike)."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise FileNotFoundError(f"cannot read mask {path}: missing, unreadable or not an image")
    return mask > 0
