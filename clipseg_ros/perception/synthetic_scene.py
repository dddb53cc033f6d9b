"""A scene with known geometry, ray-cast exactly: boxes (or thin cards) on or in front of a plane facing the camera,
and what a depth sensor makes of its edges.

What the tests check 3D against, what the post-processing bench runs on, and a labelled stand-in depth for
cameras without one (the sample camera's photos). Camera optical frame: x right, y down, z forward, metres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from clipseg_ros.perception.intrinsics import Intrinsics

# What a depth image holds where there is no measurement: 0 (no return, as in 16UC1), NaN and inf (32FC1).
_INVALID = (0.0, np.nan, np.inf, -np.inf)


@dataclass(frozen=True)
class SceneBox:
    """An axis-aligned box: its footprint in x and y, its height towards the camera, and how far its back face is
    in front of the plane (0: it stands on the plane; a card is a box a few millimetres high)."""

    x: tuple[float, float]
    y: tuple[float, float]
    height: float
    lift: float = 0.0

    def size(self) -> tuple[float, float, float]:
        return self.x[1] - self.x[0], self.y[1] - self.y[0], self.height

    def corners(self, plane_z: float) -> tuple[np.ndarray, np.ndarray]:
        """Its lowest and highest (x, y, z) corner in front of a plane at `plane_z`."""
        back = plane_z - self.lift
        return np.array((self.x[0], self.y[0], back - self.height)), np.array((self.x[1], self.y[1], back))


@dataclass(frozen=True, eq=False)
class RenderedScene:
    depth: np.ndarray  # (H, W) float32 metres along z
    object_id: np.ndarray  # (H, W) int: 0 the plane, k box k (1-based)
    points: np.ndarray  # (H, W, 3) float32: the surface point each pixel sees

    def mask(self, box_number: int) -> np.ndarray:
        return self.object_id == box_number


def rays(intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) x/z and y/z of each pixel's ray: the ray through a pixel centre is z * (dx, dy, 1)."""
    ray_x = (np.arange(intrinsics.width) - intrinsics.cx) / intrinsics.fx
    ray_y = (np.arange(intrinsics.height) - intrinsics.cy) / intrinsics.fy
    return np.meshgrid(ray_x, ray_y)


def box_depth(intrinsics: Intrinsics, plane_z: float, box: SceneBox) -> np.ndarray:
    """(H, W) depth at which each pixel's ray enters `box` alone (nothing occludes it), inf where it misses."""
    dx, dy = rays(intrinsics)
    low, high = box.corners(plane_z)
    enter, leave = np.full(dx.shape, low[2]), np.full(dx.shape, high[2])
    with np.errstate(divide="ignore", invalid="ignore"):
        for slope, axis in ((dx, 0), (dy, 1)):  # slab test per axis
            t_low, t_high = low[axis] / slope, high[axis] / slope
            enter = np.maximum(enter, np.minimum(t_low, t_high))
            leave = np.minimum(leave, np.maximum(t_low, t_high))
    return np.where((enter <= leave) & (enter > 0), enter, np.inf)


def render(intrinsics: Intrinsics, plane_z: float, boxes: Sequence[SceneBox]) -> RenderedScene:
    """Depth, visible object and 3D point per pixel of a plane at `plane_z` with `boxes` on or before it."""
    dx, dy = rays(intrinsics)
    depth = np.full(dx.shape, plane_z)
    object_id = np.zeros(dx.shape, dtype=np.int32)
    for number, box in enumerate(boxes, start=1):
        enter = box_depth(intrinsics, plane_z, box)
        hit = enter < depth
        depth[hit] = enter[hit]
        object_id[hit] = number
    points = np.stack((dx * depth, dy * depth, depth), axis=-1)
    return RenderedScene(depth.astype(np.float32), object_id, points.astype(np.float32))


def with_sensor_edges(depth_m: np.ndarray, rng: np.random.Generator, flying: float, holes: float) -> np.ndarray:
    """A rendered depth image as sensors give it at edges: next to a depth jump (over 5 %), a share `flying` of the
    pixels mixes the two surfaces (any blend: flying pixels), and a share `holes` of the pixels within two of the
    jump reads invalid (0, NaN or inf, as cameras and float pipelines write it)."""
    square = np.ones((3, 3), np.uint8)
    nearest, farthest = cv2.erode(depth_m, square), cv2.dilate(depth_m, square)
    at_jump = farthest - nearest > 0.05 * nearest
    near_jump = cv2.dilate(at_jump.view(np.uint8), np.ones((5, 5), np.uint8)).view(bool)
    out = depth_m.copy()
    mixed = at_jump & (rng.random(depth_m.shape) < flying)
    other = np.where(farthest - depth_m > depth_m - nearest, farthest, nearest)  # the far side's surface
    blend = rng.random(depth_m.shape).astype(np.float32)
    out[mixed] = (depth_m + blend * (other - depth_m))[mixed]
    lost = near_jump & (rng.random(depth_m.shape) < holes)
    out[lost] = rng.choice(np.array(_INVALID, np.float32), size=int(lost.sum()))
    return out
