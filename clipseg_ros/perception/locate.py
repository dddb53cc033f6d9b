"""Instances in 3D: their pixels' depth turned into points, and a robust position and box from those points."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from clipseg_ros.engine import limits
from clipseg_ros.perception.depth import AlignedDepth
from clipseg_ros.perception.front_surface import FrontSurface, front_surface
from clipseg_ros.perception.instances import Box3D, Instance


def locate(
    instance: Instance, depth: AlignedDepth, min_points: int, object_depth_m: float
) -> tuple[Instance, FrontSurface | None]:
    """The instance with its 3D box, and the surface it was found on (what its points are taken from).

    The object is the nearest well-populated depth surface under the mask (`front_surface`: not the background a
    coarse mask spills onto); the centroid is the per-axis median of its points, the box their
    BOX_PERCENTILE..(100 - BOX_PERCENTILE) range per axis. Without such a surface `box3d` is None. A large region
    is read on a grid of about LOCATE_POINTS pixels: its statistics need no more, and the cost stays flat with the
    object's size.
    """
    x, y, w, h = instance.bbox
    step = max(1, math.ceil(math.sqrt(instance.area / limits.LOCATE_POINTS)))
    start = step // 2  # a grid centred in the box: its edge rows, where depth mixes with the background, not favoured
    z, surface = depth.read(slice(y + start, y + h, step), slice(x + start, x + w, step))
    mask = instance.mask[start::step, start::step]
    found = front_surface(z, surface, mask, min_points, object_depth_m)
    if found is None:
        return dataclasses.replace(instance, point_count=int(np.count_nonzero(mask & ~np.isnan(z))), box3d=None), None
    rows, cols = np.nonzero(mask & found.holds(z, surface))
    z, rows, cols = z[rows, cols], rows * step + start, cols * step + start
    points = np.stack((depth.ray_x[x + cols] * z, depth.ray_y[y + rows] * z, z), axis=1)
    low, median, high = np.percentile(points, (limits.BOX_PERCENTILE, 50.0, 100.0 - limits.BOX_PERCENTILE), axis=0)
    box = Box3D(
        centroid=_triple(median),
        center=_triple((low + high) / 2),
        size=_triple(high - low),
    )
    return dataclasses.replace(instance, point_count=int(z.size), box3d=box), found


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])
