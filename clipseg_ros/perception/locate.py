"""Instances in 3D: their pixels' depth turned into points, and a robust position and box from those points."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .. import limits
from .depth import AlignedDepth
from .instances import Box3D, Instance


def locate(instance: Instance, depth: AlignedDepth, min_points: int, object_depth_m: float) -> Instance:
    """The instance with its 3D box, or with `box3d` None when fewer than `min_points` valid points remain.

    Points farther than `object_depth_m` from the region's median depth are dropped (background behind a
    mask that spills past the object's edge); the centroid is the per-axis median of the rest, the box their
    BOX_PERCENTILE..(100 - BOX_PERCENTILE) range per axis. A large region is read on a grid of about
    LOCATE_POINTS pixels: its statistics need no more, and the cost stays flat with the object's size.
    """
    x, y, w, h = instance.bbox
    step = max(1, math.ceil(math.sqrt(instance.area / limits.LOCATE_POINTS)))
    start = step // 2  # a grid centred in the box: its edge rows, where depth mixes with the background, not favoured
    z_block = depth.metres(slice(y + start, y + h, step), slice(x + start, x + w, step))
    rows, cols = np.nonzero(instance.mask[start::step, start::step] & ~np.isnan(z_block))
    z = z_block[rows, cols]
    rows, cols = rows * step + start, cols * step + start
    if z.size >= min_points:
        keep = np.abs(z - np.median(z)) <= object_depth_m
        rows, cols, z = rows[keep], cols[keep], z[keep]
    if z.size < min_points:
        return dataclasses.replace(instance, point_count=int(z.size), box3d=None)
    points = np.stack((depth.ray_x[x + cols] * z, depth.ray_y[y + rows] * z, z), axis=1)
    low, median, high = np.percentile(points, (limits.BOX_PERCENTILE, 50.0, 100.0 - limits.BOX_PERCENTILE), axis=0)
    box = Box3D(
        centroid=_triple(median),
        center=_triple((low + high) / 2),
        size=_triple(high - low),
    )
    return dataclasses.replace(instance, point_count=int(z.size), box3d=box)


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])
