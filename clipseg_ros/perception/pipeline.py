"""One frame's post-processing: the engine's per-prompt maps in; instances, their 3D and points out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clipseg_ros.engine import limits
from clipseg_ros.perception.depth import AlignedDepth, DepthInput
from clipseg_ros.perception.instances import Instance, find_instances
from clipseg_ros.perception.intrinsics import Intrinsics
from clipseg_ros.perception.locate import locate
from clipseg_ros.perception.points import Points, extract_points


@dataclass(frozen=True)
class PerceptionSettings:
    min_area: int = limits.DEFAULT_MIN_AREA  # pixels: smaller regions are not instances
    depth_min_m: float = limits.DEFAULT_DEPTH_MIN_M  # valid depth range
    depth_max_m: float = limits.DEFAULT_DEPTH_MAX_M
    min_points: int = limits.DEFAULT_MIN_POINTS  # fewer valid points: no 3D for that instance
    object_depth_m: float = limits.DEFAULT_OBJECT_DEPTH_M  # farther from the object surface's median: not it
    point_stride: int = limits.DEFAULT_POINT_STRIDE  # points from every n-th pixel per row and column
    point_labels: tuple[str, ...] = ()  # prompts whose instances' pixels become points; empty: all

    def __post_init__(self) -> None:
        limits.check_count("min_area", self.min_area, 1)
        limits.check_depth_range(self.depth_min_m, self.depth_max_m)
        limits.check_count("min_points", self.min_points, 1)
        limits.check_positive_number("object_depth_m", self.object_depth_m, limits.DEPTH_MAX_LIMIT_M)
        limits.check_count("point_stride", self.point_stride, 1, limits.MAX_POINT_STRIDE)
        if isinstance(self.point_labels, str) or not all(isinstance(s, str) for s in self.point_labels):
            raise ValueError(f"point_labels must be a sequence of prompt labels, got {self.point_labels!r}")
        object.__setattr__(self, "point_labels", tuple(self.point_labels))


@dataclass(frozen=True, eq=False)
class Perception:
    labels: tuple[str, ...]
    instances: tuple[Instance, ...]  # grouped by prompt in label order
    points: Points | None  # None without depth

    @property
    def has_depth(self) -> bool:
        return self.points is not None


def perceive(
    probabilities: np.ndarray,
    masks: np.ndarray,
    labels: Sequence[str],
    settings: PerceptionSettings,
    depth: DepthInput | None = None,
    colour_intrinsics: Intrinsics | None = None,
) -> Perception:
    """Instances of each prompt, and with a depth frame their 3D boxes and the selected prompts' points (of the
    instances with 3D, on the same object surface as their box: `front_surface`).

    probabilities (N, H, W) float32 and masks (N, H, W) bool are the engine's result (`SegmentationResult`);
    depth is the frame paired with this image, registered to it; colour_intrinsics the image's own
    (None: the depth camera's scaled to the image size, as for a depth stream aligned to colour).
    """
    _check_maps(probabilities, masks, labels)
    instances = find_instances(probabilities, masks, labels, settings.min_area)
    if depth is None:
        return Perception(tuple(labels), instances, None)
    height, width = masks.shape[1:]
    colour = colour_intrinsics or depth.intrinsics.scaled_to(width, height)
    if (colour.width, colour.height) != (width, height):
        raise ValueError(f"colour camera_info is {colour.width}x{colour.height} but the image is {width}x{height}")
    aligned = AlignedDepth(depth, colour, settings.depth_min_m, settings.depth_max_m)
    located = [locate(i, aligned, settings.min_points, settings.object_depth_m) for i in instances]
    wanted = set(settings.point_labels)
    pointed = [(i, surface) for i, surface in located if surface is not None and (not wanted or i.label in wanted)]
    points = extract_points(probabilities, pointed, aligned, settings.point_stride)
    return Perception(tuple(labels), tuple(i for i, _ in located), points)


def _check_maps(probabilities: np.ndarray, masks: np.ndarray, labels: Sequence[str]) -> None:
    if probabilities.ndim != 3 or masks.shape != probabilities.shape:
        raise ValueError(f"probabilities and masks must both be (N, H, W), got {probabilities.shape} and {masks.shape}")
    if masks.dtype != np.bool_:
        raise ValueError(f"masks must be bool, got {masks.dtype}")
    if len(labels) != probabilities.shape[0]:
        raise ValueError(f"{len(labels)} labels for {probabilities.shape[0]} probability maps")
