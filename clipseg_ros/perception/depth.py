"""Depth aligned with the colour image: metres at colour pixels, and the 3D points behind them.

The depth image is registered to the colour camera (same optical frame, REP-118 encodings) but may have
another resolution or principal point; a colour pixel's depth is read at the depth pixel on the same ray, found
through the two intrinsics (nearest pixel: interpolating across an object's edge would invent a surface).
Nothing is resampled for the whole frame: only the pixels asked for are read.

Flying pixels: where the depth jumps (an object's edge against the background), a colour pixel's nearest depth
sample may lie on the other side, and the depth sensor itself mixes the two surfaces there. A depth sample that
differs from a 4-neighbour by more than DEPTH_EDGE_RATIO of its depth is dropped: it would put object points
behind the object (a grasp target centimetres off, a phantom obstacle streak in a costmap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import limits
from .intrinsics import Intrinsics

# REP-118: metres per stored unit
_METRES_PER_UNIT = {"16UC1": (np.dtype(np.uint16), 0.001), "32FC1": (np.dtype(np.float32), 1.0)}


@dataclass(frozen=True, eq=False)
class DepthInput:
    """One depth frame as it arrived: (H, W) uint16 millimetres (16UC1) or float32 metres (32FC1)."""

    image: np.ndarray
    encoding: str
    intrinsics: Intrinsics

    def __post_init__(self) -> None:
        limits.check_depth_encoding(self.encoding)
        dtype, _ = _METRES_PER_UNIT[self.encoding]
        if self.image.dtype != dtype or self.image.ndim != 2:
            raise ValueError(f"{self.encoding} depth must be a 2-D {dtype} array, got {self.image.dtype} "
                             f"{self.image.shape}")
        height, width = self.image.shape
        if (width, height) != (self.intrinsics.width, self.intrinsics.height):
            raise ValueError(f"depth image is {width}x{height} but its camera_info is "
                             f"{self.intrinsics.width}x{self.intrinsics.height}")


class AlignedDepth:
    """Depth in metres at colour pixels, NaN where invalid (0, NaN, outside the range, off the depth image)."""

    def __init__(self, depth: DepthInput, colour: Intrinsics, min_m: float, max_m: float) -> None:
        self.colour = colour
        self._raw = depth.image
        self._scale = _METRES_PER_UNIT[depth.encoding][1]
        self._min_m, self._max_m = limits.check_depth_range(min_m, max_m)
        # Colour column u and depth column u_d see the same ray: (u - cx) / fx == (u_d - cx_d) / fx_d.
        d = depth.intrinsics
        self._cols, self._cols_ok = _pixel_map(colour.width, colour.cx, colour.fx, d.cx, d.fx, d.width)
        self._rows, self._rows_ok = _pixel_map(colour.height, colour.cy, colour.fy, d.cy, d.fy, d.height)
        # x = (u - cx) / fx * z: the ray's slope per colour column and row.
        self.ray_x = ((np.arange(colour.width) - colour.cx) / colour.fx).astype(np.float32)
        self.ray_y = ((np.arange(colour.height) - colour.cy) / colour.fy).astype(np.float32)

    def metres(self, rows: slice, cols: slice) -> np.ndarray:
        """(rows, cols) float32 metres for a block of colour pixels (a bounding box, or a strided grid)."""
        r, c = self._rows[rows], self._cols[cols]
        z = self._read(r, c)
        limit = z * limits.DEPTH_EDGE_RATIO
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            neighbour = self._read(np.clip(nr, 0, self._raw.shape[0] - 1), np.clip(nc, 0, self._raw.shape[1] - 1))
            z[np.abs(neighbour - z) > limit] = np.nan  # an invalid neighbour (NaN) is a hole, not an edge
        z[~self._rows_ok[rows]] = np.nan
        z[:, ~self._cols_ok[cols]] = np.nan
        return z

    def _read(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        z = self._raw[np.ix_(rows, cols)].astype(np.float32)
        if self._scale != 1.0:
            z *= self._scale
        z[~((z >= self._min_m) & (z <= self._max_m) & (z > 0))] = np.nan  # NaN compares false: invalid too
        return z


def _pixel_map(
    size: int, c: float, f: float, c_depth: float, f_depth: float, size_depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per colour pixel index: the depth pixel index on the same ray (clipped), and whether it is on the image."""
    index = np.rint((np.arange(size) - c) * (f_depth / f) + c_depth).astype(np.intp)
    inside = (index >= 0) & (index < size_depth)
    return np.clip(index, 0, size_depth - 1), inside
