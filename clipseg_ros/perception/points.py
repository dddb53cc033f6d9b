"""3D points of masked pixels, for costmaps and grasp planners: every n-th pixel per row and column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .depth import AlignedDepth


@dataclass(frozen=True, eq=False)
class Points:
    """M points in the camera's optical frame; a pixel in several prompts' masks gives one point per prompt."""

    xyz: np.ndarray  # (M, 3) float32 metres
    label_index: np.ndarray  # (M,) uint32: index into the frame's labels
    probability: np.ndarray  # (M,) float32: that prompt's probability at the pixel

    def __len__(self) -> int:
        return len(self.xyz)


def extract_points(
    probabilities: np.ndarray, masks: np.ndarray, prompt_indices: Sequence[int], depth: AlignedDepth, stride: int
) -> Points:
    """Points of the masked pixels of the given prompts with valid depth, on a grid of every `stride`-th pixel."""
    grid = slice(0, None, stride)
    z_grid = depth.metres(grid, grid)  # read once for all prompts
    valid = ~np.isnan(z_grid)
    ray_x, ray_y = depth.ray_x[grid], depth.ray_y[grid]
    parts = []
    for index in prompt_indices:
        rows, cols = np.nonzero(masks[index, grid, grid] & valid)
        z = z_grid[rows, cols]
        parts.append((
            np.stack((ray_x[cols] * z, ray_y[rows] * z, z), axis=1),
            np.full(z.size, index, dtype=np.uint32),
            probabilities[index, grid, grid][rows, cols],
        ))
    if not parts:
        return Points(np.zeros((0, 3), np.float32), np.zeros(0, np.uint32), np.zeros(0, np.float32))
    xyz, label_index, probability = (np.concatenate(column) for column in zip(*parts, strict=True))
    return Points(xyz.astype(np.float32, copy=False), label_index, probability.astype(np.float32, copy=False))
