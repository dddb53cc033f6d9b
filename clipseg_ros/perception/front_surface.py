"""Which of an instance's depth samples are the object: the nearest well-populated surface under its mask.

CLIPSeg's masks are coarse: they spill past an object's edge, and for a small object the spill holds most of the
mask (a 6 cm cube at 1.5 m under a mask spilling 6 pixels: 39 % of it on the cube, the rest on the wall behind),
so the median of the mask's depths lies on the wall. `AlignedDepth` cuts the depth image into continuous surfaces
at its depth edges; the object is the surface in front:

1. the mask's core (its inner half, by distance to its border) must have valid depth at OBJECT_SURFACE_MIN_SHARE
   of its samples: otherwise the object's own depth is lost (a black or shiny object) and only the background
   around it remains;
2. the surfaces holding at least OBJECT_SURFACE_MIN_SHARE of the mask's valid samples, and `min_points`, are
   candidates; the one with the nearest median depth is the object, with the other candidates whose median lies
   within its depth span (one object cut in two by a band of invalid depth);
3. samples in front of it on smaller surfaces may hold at most OBJECT_AHEAD_MAX_SHARE: more is an object in front
   too poorly measured to be taken (its depth eaten by holes and flying pixels), and the surface behind it is not
   the object;
4. of the object's surfaces, the samples within `object_depth_m` of their median depth are the object (where a
   surface runs on into a background, like a box standing on the table its mask spills onto, it is cut there).

Each step that fails leaves the instance without 3D: it is never guessed. Its 3D box (`locate`) and its points
(`extract_points`) are taken from the same surfaces and depth band.

What the rule cannot do:
- tell an object from a background it touches without a depth edge (a box standing on the table its mask spills
  onto: the spilled pixels where they meet count as the object), or from one less than DEPTH_EDGE_RATIO of the
  depth behind it (7.5 cm at 1.5 m);
- find an object holding less than OBJECT_SURFACE_MIN_SHARE of its mask's valid depth (an object much smaller
  than the spill around it): the instance has no 3D, or the nearest surface that holds the share is taken;
- see past a nearer surface the mask spills onto that holds the share (a mask running onto the gripper in front
  of the object): that surface is taken for the object;
- keep the parts of one object that a depth edge separates and whose depths do not overlap: the nearest is taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from clipseg_ros.engine import limits


@dataclass(frozen=True)
class FrontSurface:
    """The object's surfaces (numbers from `AlignedDepth.read`) and the depth band it spans on them."""

    surfaces: tuple[int, ...]
    near_m: float
    far_m: float

    def holds(self, z: np.ndarray, surface: np.ndarray) -> np.ndarray:
        """Where samples (metres, NaN invalid; surface numbers) are the object's."""
        inside = (z >= self.near_m) & (z <= self.far_m)
        on = surface == self.surfaces[0]
        for number in self.surfaces[1:]:  # rarely any: np.isin costs ten times this on a few surfaces
            on |= surface == number
        return inside & on


def front_surface(
    z: np.ndarray, surface: np.ndarray, mask: np.ndarray, min_points: int, object_depth_m: float
) -> FrontSurface | None:
    """The object under an instance's mask, from samples on a grid over its box: z metres (NaN invalid), their
    surface numbers and the mask, all (rows, cols). None when the rule finds none: the 3D is then unknown."""
    valid = mask & ~np.isnan(z)
    core = _core(mask)
    if np.count_nonzero(valid & core) < limits.OBJECT_SURFACE_MIN_SHARE * np.count_nonzero(core):
        return None
    z, surface = z[valid], surface[valid]
    if z.size < min_points:
        return None
    picked = _nearest_surfaces(z, surface, min_points)
    if picked is None:
        return None
    surfaces, on_object = picked
    median = float(np.median(z[on_object]))
    found = FrontSurface(surfaces, median - object_depth_m, median + object_depth_m)
    if np.count_nonzero(found.holds(z, surface)) < min_points:
        return None
    return found


def _nearest_surfaces(z: np.ndarray, surface: np.ndarray, min_points: int) -> tuple[tuple[int, ...], np.ndarray] | None:
    """Steps 2 and 3 on the valid samples: the object's surface numbers and which samples lie on them."""
    if surface.min() == surface.max():  # one surface, the usual case: nothing to choose
        return (int(surface[0]),), np.ones(z.size, bool)
    numbers, group, counts = np.unique(surface, return_inverse=True, return_counts=True)
    candidates = np.flatnonzero(counts >= max(min_points, math.ceil(limits.OBJECT_SURFACE_MIN_SHARE * z.size)))
    if candidates.size == 0:
        return None
    # At most 1 / OBJECT_SURFACE_MIN_SHARE candidates: a loop over surfaces, not samples.
    on = [group == candidate for candidate in candidates]
    medians = np.array([np.median(z[samples]) for samples in on])
    front = int(np.argmin(medians))
    low, high = z[on[front]].min(), z[on[front]].max()
    joined = [k for k, median in enumerate(medians) if low <= median <= high]
    on_object = np.logical_or.reduce([on[k] for k in joined])
    if np.count_nonzero((z < low) & ~on_object) > limits.OBJECT_AHEAD_MAX_SHARE * z.size:
        return None
    return tuple(int(numbers[candidates[k]]) for k in joined), on_object


def _core(mask: np.ndarray) -> np.ndarray:
    """The inner half of a mask: its samples at least half the largest distance from its border (the box's edge
    counts as border)."""
    framed = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    distance = cv2.distanceTransform(framed, cv2.DIST_L2, 3)[1:-1, 1:-1]
    return distance >= distance.max() / 2
