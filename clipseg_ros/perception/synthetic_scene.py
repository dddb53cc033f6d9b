"""A scene with known geometry, ray-cast exactly: boxes standing on a plane facing the camera.

What the tests check 3D against, what the post-processing bench runs on, and a labelled stand-in depth for
cameras without one (the sample camera's photos). Camera optical frame: x right, y down, z forward, metres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .intrinsics import Intrinsics


@dataclass(frozen=True)
class SceneBox:
    """An axis-aligned box standing on the plane: its footprint in x and y, and its height towards the camera."""

    x: tuple[float, float]
    y: tuple[float, float]
    height: float

    def size(self) -> tuple[float, float, float]:
        return self.x[1] - self.x[0], self.y[1] - self.y[0], self.height


@dataclass(frozen=True, eq=False)
class RenderedScene:
    depth: np.ndarray  # (H, W) float32 metres along z
    object_id: np.ndarray  # (H, W) int: 0 the plane, k box k (1-based)
    points: np.ndarray  # (H, W, 3) float32: the surface point each pixel sees

    def mask(self, box_number: int) -> np.ndarray:
        return self.object_id == box_number


def render(intrinsics: Intrinsics, plane_z: float, boxes: Sequence[SceneBox]) -> RenderedScene:
    """Depth, visible object and 3D point per pixel of a plane at `plane_z` with `boxes` standing on it."""
    ray_x = (np.arange(intrinsics.width) - intrinsics.cx) / intrinsics.fx
    ray_y = (np.arange(intrinsics.height) - intrinsics.cy) / intrinsics.fy
    dx, dy = np.meshgrid(ray_x, ray_y)  # a ray is t * (dx, dy, 1): its parameter t is the depth z
    depth = np.full(dx.shape, plane_z)
    object_id = np.zeros(dx.shape, dtype=np.int32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for number, box in enumerate(boxes, start=1):
            enter, leave = np.full(dx.shape, plane_z - box.height), np.full(dx.shape, plane_z)
            for slope, (low, high) in ((dx, box.x), (dy, box.y)):  # slab test per axis
                t_low, t_high = low / slope, high / slope
                enter = np.maximum(enter, np.minimum(t_low, t_high))
                leave = np.minimum(leave, np.maximum(t_low, t_high))
            hit = (enter <= leave) & (enter > 0) & (enter < depth)
            depth[hit] = enter[hit]
            object_id[hit] = number
    points = np.stack((dx * depth, dy * depth, depth), axis=-1)
    return RenderedScene(depth.astype(np.float32), object_id, points.astype(np.float32))
