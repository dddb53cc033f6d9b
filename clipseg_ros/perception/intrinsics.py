"""Pinhole intrinsics of one image stream, as camera_info's K gives them (no distortion: rectified or aligned)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        if not (self.width > 0 and self.height > 0):
            raise ValueError(f"intrinsics need a positive image size, got {self.width}x{self.height}")
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in values) or self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"intrinsics need finite fx, fy > 0 and finite cx, cy, got {values}")

    @classmethod
    def from_k(cls, k: Any, width: int, height: int) -> Intrinsics:
        """From camera_info's row-major 3x3 K (9 numbers, or a 3x3 array) and the image size it belongs to.

        An all-zero K is what an uncalibrated camera_info carries: refused, with the reason.
        """
        matrix = np.asarray(k, dtype=np.float64).reshape(-1)
        if matrix.size != 9:
            raise ValueError(f"K must hold 9 numbers (3x3, row-major), got {matrix.size}")
        if not matrix.any():
            raise ValueError("K is all zeros: the camera is not calibrated")
        return cls(int(width), int(height), float(matrix[0]), float(matrix[4]), float(matrix[2]), float(matrix[5]))

    def scaled_to(self, width: int, height: int) -> Intrinsics:
        """The same camera at another resolution (as image_proc's resize scales camera_info)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)
