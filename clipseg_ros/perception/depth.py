"""Depth aligned with the colour image: metres at colour pixels, and the 3D points behind them.

The depth image is registered to the colour camera (same optical frame, REP-118 encodings) but may have
another resolution or principal point; a colour pixel's depth is read at the depth pixel on the same ray, found
through the two intrinsics (nearest pixel: interpolating across an object's edge would invent a surface).
Nothing is resampled to the colour size: only the pixels asked for are read.

Flying pixels: where the depth jumps (an object's edge against the background), a colour pixel's nearest depth
sample may lie on the other side, and the depth sensor itself mixes the two surfaces there. A depth sample that
differs from a 4-neighbour by more than DEPTH_EDGE_RATIO of its depth is dropped: it would put object points
behind the object (a grasp target centimetres off, a phantom obstacle streak in a costmap).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .. import limits
from .intrinsics import Intrinsics

# REP-118: the stored type of each encoding (16UC1 millimetres, 32FC1 metres)
_DTYPES = {"16UC1": np.dtype(np.uint16), "32FC1": np.dtype(np.float32)}


@dataclass(frozen=True, eq=False)
class DepthInput:
    """One depth frame as it arrived: (H, W) uint16 millimetres (16UC1) or float32 metres (32FC1)."""

    image: np.ndarray
    encoding: str
    intrinsics: Intrinsics

    def __post_init__(self) -> None:
        limits.check_choice("depth encoding", self.encoding, limits.DEPTH_ENCODINGS)
        dtype = _DTYPES[self.encoding]
        if self.image.dtype != dtype or self.image.ndim != 2:
            raise ValueError(f"{self.encoding} depth must be a 2-D {dtype} array, got {self.image.dtype} "
                             f"{self.image.shape}")
        height, width = self.image.shape
        if (width, height) != (self.intrinsics.width, self.intrinsics.height):
            raise ValueError(f"depth image is {width}x{height} but its camera_info is "
                             f"{self.intrinsics.width}x{self.intrinsics.height}")


class AlignedDepth:
    """Depth in metres at colour pixels, NaN where invalid (0, NaN, outside the range, an edge, off the image)."""

    def __init__(self, depth: DepthInput, colour: Intrinsics, min_m: float, max_m: float) -> None:
        self._metres = _valid_metres(depth, *limits.check_depth_range(min_m, max_m))
        # Colour column u and depth column u_d see the same ray: (u - cx) / fx == (u_d - cx_d) / fx_d.
        d = depth.intrinsics
        self._cols, self._cols_ok = _pixel_map(colour.width, colour.cx, colour.fx, d.cx, d.fx, d.width)
        self._rows, self._rows_ok = _pixel_map(colour.height, colour.cy, colour.fy, d.cy, d.fy, d.height)
        # x = (u - cx) / fx * z: the ray's slope per colour column and row.
        self.ray_x = ((np.arange(colour.width) - colour.cx) / colour.fx).astype(np.float32)
        self.ray_y = ((np.arange(colour.height) - colour.cy) / colour.fy).astype(np.float32)

    def metres(self, rows: slice, cols: slice) -> np.ndarray:
        """(rows, cols) float32 metres for a block of colour pixels (a bounding box, or a strided grid)."""
        z = self._metres[np.ix_(self._rows[rows], self._cols[cols])]
        z[~self._rows_ok[rows]] = np.nan
        z[:, ~self._cols_ok[cols]] = np.nan
        return z


def _valid_metres(depth: DepthInput, min_m: float, max_m: float) -> np.ndarray:
    """The whole depth image in metres, NaN where invalid or on an edge (one pass of C loops: cheaper than
    testing the neighbours of every pixel read, and the same cost whatever the masks)."""
    if depth.encoding == "16UC1":
        z = np.multiply(depth.image, np.float32(0.001), dtype=np.float32)
    else:
        z = depth.image.astype(np.float32)
    valid = (z >= min_m) & (z <= max_m)  # NaN compares false: invalid too
    if min_m <= 0:
        valid &= z > 0
    # Nearest and farthest valid 4-neighbour (an invalid neighbour is a hole, not an edge).
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    farthest = cv2.dilate(np.where(valid, z, np.float32(0)), cross, borderType=cv2.BORDER_REPLICATE)
    nearest = cv2.erode(np.where(valid, z, np.float32(np.inf)), cross, borderType=cv2.BORDER_REPLICATE)
    valid &= farthest <= z * np.float32(1 + limits.DEPTH_EDGE_RATIO)
    valid &= nearest >= z * np.float32(1 - limits.DEPTH_EDGE_RATIO)
    z[~valid] = np.nan
    return z


def _pixel_map(
    size: int, c: float, f: float, c_depth: float, f_depth: float, size_depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per colour pixel index: the depth pixel index on the same ray (clipped), and whether it is on the image."""
    index = np.rint((np.arange(size) - c) * (f_depth / f) + c_depth).astype(np.intp)
    inside = (index >= 0) & (index < size_depth)
    return np.clip(index, 0, size_depth - 1), inside
