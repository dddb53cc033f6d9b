"""Objects in per-prompt masks: each connected region above a minimum area is one instance of its prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Box3D:
    """Where an instance is, in the camera's optical frame (x right, y down, z forward; metres)."""

    centroid: tuple[float, float, float]  # per-axis median of its points
    center: tuple[float, float, float]  # of the axis-aligned box
    size: tuple[float, float, float]


@dataclass(frozen=True, eq=False)
class Instance:
    label_index: int  # index into the frame's labels (prompt order, 0-based)
    label: str
    score_max: float  # highest probability of the prompt inside the region
    score_mean: float
    bbox: tuple[int, int, int, int]  # x, y, width, height (pixels)
    area: int  # pixels
    centroid: tuple[float, float]  # x, y (pixels)
    mask: np.ndarray  # (height, width) bool: the region inside bbox
    point_count: int = 0  # valid depth points that located it (0 without depth)
    box3d: Box3D | None = None  # None: no depth frame, or too few valid points

    @property
    def has_3d(self) -> bool:
        return self.box3d is not None


def find_instances(
    probabilities: np.ndarray, masks: np.ndarray, labels: Sequence[str], min_area: int
) -> tuple[Instance, ...]:
    """Instances of every prompt, grouped by prompt in label order, largest first within a prompt.

    probabilities: (N, H, W) float32; masks: (N, H, W) bool (the probabilities at or above the threshold).
    Regions are 8-connected; the score is read from the prompt's own probabilities inside the region.
    """
    found: list[Instance] = []
    for index, label in enumerate(labels):
        mask = np.ascontiguousarray(masks[index])
        if not mask.any():
            continue
        _, components, stats, centroids = cv2.connectedComponentsWithStats(
            mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S
        )
        areas = stats[1:, cv2.CC_STAT_AREA]
        kept = np.flatnonzero(areas >= min_area) + 1  # component 0 is the background
        for component in kept[np.argsort(-areas[kept - 1], kind="stable")]:
            x, y, w, h, area = (int(v) for v in stats[component])
            region = components[y : y + h, x : x + w] == component
            inside = probabilities[index, y : y + h, x : x + w][region]
            found.append(
                Instance(
                    label_index=index,
                    label=label,
                    score_max=float(inside.max()),
                    score_mean=float(inside.mean()),
                    bbox=(x, y, w, h),
                    area=area,
                    centroid=(float(centroids[component, 0]), float(centroids[component, 1])),
                    mask=region,
                )
            )
    return tuple(found)
