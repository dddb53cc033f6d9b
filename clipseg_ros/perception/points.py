"""3D points of instances, for costmaps and grasp planners: every n-th pixel per row and column of the frame."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clipseg_ros.perception.depth import AlignedDepth
from clipseg_ros.perception.front_surface import FrontSurface
from clipseg_ros.perception.instances import Instance


@dataclass(frozen=True, eq=False)
class Points:
    """M points in the camera's optical frame; a pixel in several prompts' masks gives one point per prompt."""

    xyz: np.ndarray  # (M, 3) float32 metres
    label_index: np.ndarray  # (M,) uint32: index into the frame's labels
    probability: np.ndarray  # (M,) float32: that prompt's probability at the pixel

    def __len__(self) -> int:
        return len(self.xyz)


def extract_points(
    probabilities: np.ndarray,
    located: Sequence[tuple[Instance, FrontSurface]],
    depth: AlignedDepth,
    stride: int,
) -> Points:
    """Points of the located instances' pixels on their object's surface (`locate`: the same samples as their 3D
    box, so no background a mask spills onto), on the frame's grid of every `stride`-th pixel."""
    grid = slice(0, None, stride)
    z_grid, surface_grid = depth.read(grid, grid) if located else (None, None)  # read once for all instances
    ray_x, ray_y = depth.ray_x[grid], depth.ray_y[grid]
    parts = []
    for instance, surface in located:
        x, y, w, h = instance.bbox
        top, left = -(-y // stride), -(-x // stride)  # the grid's first row and column inside the box
        block = slice(top, -(-(y + h) // stride)), slice(left, -(-(x + w) // stride))
        z = z_grid[block]
        mask = instance.mask[top * stride - y :: stride, left * stride - x :: stride]
        r, c = np.nonzero(mask & surface.holds(z, surface_grid[block]))
        z = z[r, c]
        r, c = r + top, c + left
        parts.append((
            np.stack((ray_x[c] * z, ray_y[r] * z, z), axis=1),
            np.full(z.size, instance.label_index, dtype=np.uint32),
            probabilities[instance.label_index, grid, grid][r, c],
        ))
    if not parts:
        return Points(np.zeros((0, 3), np.float32), np.zeros(0, np.uint32), np.zeros(0, np.float32))
    xyz, label_index, probability = (np.concatenate(column) for column in zip(*parts, strict=True))
    return Points(xyz.astype(np.float32, copy=False), label_index, probability.astype(np.float32, copy=False))
