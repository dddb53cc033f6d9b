"""One frame's per-prompt maps as they are published: exclusions applied, masks possibly steadied over frames.

The segmenter's result holds every prompt's map, exclusion prompts included, with masks that are the probability
at or above the threshold. What a consumer gets (the node's outputs, the service's answer, clipseg-segment's
files) is this instead: the exclusion prompts' pixels taken out of every other prompt and the exclusion prompts
gone from the labels (`apply_exclusions`); with steady masks (`clipseg_ros.perception.temporal_filter`) the
masks come from a hysteresis, so they are carried here rather than recomputed from the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from clipseg_ros.engine.exclusion import apply_exclusions


@dataclass(frozen=True, eq=False)
class FrameMaps:
    labels: tuple[str, ...]  # the prompts that remain, in order
    probabilities: np.ndarray  # (N, H, W) float32
    masks: np.ndarray  # (N, H, W) bool
    threshold: float
    exclusions: tuple[str, ...]  # what was excluded ("hand"), in order

    @cached_property
    def scores(self) -> np.ndarray:
        """(N,) float32: the highest probability of each prompt, how sure the model is it is there."""
        return self.probabilities.reshape(len(self.labels), -1).max(axis=1)

    def label_image(self) -> np.ndarray:
        """(H, W) uint8: 0 background, k for prompt k (1-based), the likeliest of the prompts whose mask holds
        the pixel (the same as the segmenter's label image when the masks are the thresholded maps)."""
        if len(self.labels) > 255:
            raise ValueError("a uint8 label image holds at most 255 prompts")
        best = np.where(self.masks, self.probabilities, -1.0).argmax(axis=0)
        return np.where(self.masks.any(axis=0), best + 1, 0).astype(np.uint8)


def published_maps(
    labels: Sequence[str], probabilities: np.ndarray, masks: np.ndarray, threshold: float
) -> FrameMaps:
    """The maps of the prompts that are not exclusions, less every exclusion's mask pixels."""
    excluded = apply_exclusions(probabilities, masks, labels)
    return FrameMaps(excluded.labels, excluded.probabilities, excluded.masks, float(threshold), excluded.exclusions)
