"""What the 3D tests build on a ray-cast scene (clipseg_ros.perception.synthetic_scene): CLIPSeg-like maps of a
mask, the mask spilled past the object, depth frames in either encoding, and how far a point lies from a box's
surface."""

from __future__ import annotations

import cv2
import numpy as np

from clipseg_ros.perception import DepthInput, Intrinsics


def maps_of(*masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities the way CLIPSeg gives them: high inside a mask, peaking at its middle, low outside."""
    masks = np.stack(masks)
    height, width = masks.shape[1:]
    ramp = np.minimum.outer(np.hanning(height), np.hanning(width)).astype(np.float32)
    probabilities = np.where(masks, 0.6 + 0.39 * ramp, 0.05 * ramp).astype(np.float32)
    return probabilities, probabilities >= 0.5


def depth_input(depth_m: np.ndarray, intrinsics: Intrinsics, encoding: str) -> DepthInput:
    """A depth frame in either REP-118 encoding; non-finite and negative metres become 0 in 16UC1 (no return)."""
    if encoding == "16UC1":
        millimetres = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m * 1000, 0)
        return DepthInput(np.rint(millimetres).astype(np.uint16), encoding, intrinsics)
    return DepthInput(depth_m.astype(np.float32), encoding, intrinsics)


def spill(mask: np.ndarray, pixels: int) -> np.ndarray:
    """The mask grown by `pixels` all round, as CLIPSeg's coarse masks run past an object's edge."""
    if pixels == 0:
        return mask
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.view(np.uint8), disk).view(bool)


def box_surface_distance(points: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(M,) metres from each point to the surface of the axis-aligned box between corners `low` and `high`."""
    outside = np.linalg.norm(np.maximum(np.maximum(low - points, points - high), 0.0), axis=1)
    inside = np.minimum(points - low, high - points).min(axis=1)
    return np.where(inside > 0, inside, outside)
