"""Depth aligned with the colour image: metres at colour pixels, and the 3D points behind them.

The depth image is registered to the colour camera (same optical frame, REP-118 encodings) but may have
another resolution or principal point; a colour pixel's depth is read at the depth pixel on the same ray, found
through the two intrinsics (nearest pixel: interpolating across an object's edge would invent a surface).
Nothing is resampled to the colour size: only the pixels asked for are read.

Flying pixels: where the depth jumps (an object's edge against the background), a colour pixel's nearest depth
sample may lie on the other side, and the depth sensor itself mixes the two surfaces there. A depth sample with
one of its 8 neighbours nearer by more than DEPTH_EDGE_RATIO of its depth lies behind an edge and is dropped: it
would put object points behind the object (a grasp target centimetres off, a phantom obstacle streak in a
costmap). The sample on the near side of the edge is the object's own and is kept (dropping it cost a coarse depth
camera a pixel of every side face: 3 cm of a box's depth at 424x240). An invalid neighbour may hide the near side
of an edge (sensors lose depth right there), so a sample beside one is dropped when any neighbour is farther by
more than the ratio, and is also compared with the samples two pixels away, at twice the ratio (what a continuous
surface may step in two pixels).

Surfaces: after that filter, two valid 8-neighbours never differ by more than DEPTH_EDGE_RATIO, so each connected
region of valid depth is one continuous surface, and a depth edge always separates two of them. Each valid depth
sample carries the number of its surface (0: invalid); `clipseg_ros.perception.front_surface` tells an object
from the background its mask spills onto by them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from clipseg_ros.engine import limits
from clipseg_ros.perception.intrinsics import Intrinsics

# REP-118: the stored type of each encoding (16UC1 millimetres, 32FC1 metres)
_DTYPES = {"16UC1": np.dtype(np.uint16), "32FC1": np.dtype(np.float32)}
# A sample's 8 neighbours (applied twice: the samples up to two pixels around).
_SQUARE = np.ones((3, 3), np.uint8)


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
        self._surfaces: np.ndarray | None = None  # labelled on the first read: a frame without instances needs none
        # Colour column u and depth column u_d see the same ray: (u - cx) / fx == (u_d - cx_d) / fx_d.
        d = depth.intrinsics
        self._cols, self._cols_ok = _pixel_map(colour.width, colour.cx, colour.fx, d.cx, d.fx, d.width)
        self._rows, self._rows_ok = _pixel_map(colour.height, colour.cy, colour.fy, d.cy, d.fy, d.height)
        # x = (u - cx) / fx * z: the ray's slope per colour column and row.
        self.ray_x = ((np.arange(colour.width) - colour.cx) / colour.fx).astype(np.float32)
        self.ray_y = ((np.arange(colour.height) - colour.cy) / colour.fy).astype(np.float32)

    def read(self, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """For a block of colour pixels (a bounding box, or a strided grid): (rows, cols) float32 metres, NaN where
        invalid, and int32 surface numbers, meaningful where the metres are valid."""
        if self._surfaces is None:
            valid = (~np.isnan(self._metres)).view(np.uint8)
            self._surfaces = cv2.connectedComponents(valid, connectivity=8, ltype=cv2.CV_32S)[1]
        at = np.ix_(self._rows[rows], self._cols[cols])
        z = self._metres[at]
        z[~self._rows_ok[rows]] = np.nan
        z[:, ~self._cols_ok[cols]] = np.nan
        return z, self._surfaces[at]


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
    dense = valid.all()  # simulated or filled depth: no hole to leave out or look past
    # Invalid samples count neither as nearest nor as farthest (cv2.copyTo: a third of np.where's time).
    z_or_zero = z if dense else cv2.copyTo(z, valid.view(np.uint8))
    z_or_inf = z if dense else cv2.copyTo(z, valid.view(np.uint8), np.full_like(z, np.inf))
    farthest = cv2.dilate(z_or_zero, _SQUARE, borderType=cv2.BORDER_REPLICATE)
    nearest = cv2.erode(z_or_inf, _SQUARE, borderType=cv2.BORDER_REPLICATE)
    ratio = np.float32(1 + limits.DEPTH_EDGE_RATIO)
    # Behind an edge (a much nearer neighbour): a flying pixel or the background, dropped. In front of one (only
    # much farther neighbours): the object's own last sample, kept, unless a hole beside it may hide the object
    # it would be the flying pixel of.
    keep = valid & (nearest * ratio >= z)
    if not dense:
        beside_hole = valid & (cv2.erode(valid.view(np.uint8), _SQUARE, borderType=cv2.BORDER_REPLICATE) == 0)
        if beside_hole.any():  # the 5x5 extremes, as the 3x3 extremes of the 3x3 extremes
            keep &= ~beside_hole | (farthest <= z * ratio)
            farthest = cv2.dilate(farthest, _SQUARE, borderType=cv2.BORDER_REPLICATE)
            nearest = cv2.erode(nearest, _SQUARE, borderType=cv2.BORDER_REPLICATE)
            keep &= ~beside_hole | _within(z, farthest, nearest, 2 * limits.DEPTH_EDGE_RATIO)
    return cv2.copyTo(z, keep.view(np.uint8), np.full_like(z, np.nan))


def _within(z: np.ndarray, farthest: np.ndarray, nearest: np.ndarray, ratio: float) -> np.ndarray:
    """Where the farthest and nearest valid samples around a pixel are within `ratio` of its depth."""
    return (farthest <= z * np.float32(1 + ratio)) & (nearest >= z * np.float32(1 - ratio))


def _pixel_map(
    size: int, c: float, f: float, c_depth: float, f_depth: float, size_depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per colour pixel index: the depth pixel index on the same ray (clipped), and whether it is on the image."""
    index = np.rint((np.arange(size) - c) * (f_depth / f) + c_depth).astype(np.intp)
    inside = (index >= 0) & (index < size_depth)
    return np.clip(index, 0, size_depth - 1), inside
