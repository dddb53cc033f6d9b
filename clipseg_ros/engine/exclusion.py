"""Exclusion prompts: what an exclusion prompt finds is no part of any other prompt's mask ("cup; -hand").

The segmenter gives an exclusion prompt ("-hand", or a visual prompt with `exclude`) a map like any other, so
steady masks can filter it too; `apply_exclusions` then removes its mask's pixels from every other prompt, in the
probabilities as well (set to 0, so a mask stays the probability at or above the threshold, and a consumer that
thresholds the probability map itself does not get the hand back), and drops it from the labels. Instances, 3D
and points are then found on what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clipseg_ros.engine.prompts import is_exclusion, prompt_subject


@dataclass(frozen=True, eq=False)
class Excluded:
    labels: tuple[str, ...]  # the prompts that remain, in order
    probabilities: np.ndarray  # (K, H, W) float32
    masks: np.ndarray  # (K, H, W) bool
    exclusions: tuple[str, ...]  # what was excluded ("hand"), in order: the label_info says so


def apply_exclusions(probabilities: np.ndarray, masks: np.ndarray, labels: Sequence[str]) -> Excluded:
    """The maps of the prompts that are not exclusions, with every exclusion's mask pixels set to 0 and False.

    probabilities (N, H, W) and masks (N, H, W) bool in label order; without exclusions they are returned as they
    are (no copy).
    """
    excluding = [is_exclusion(label) for label in labels]
    if not any(excluding):
        return Excluded(tuple(labels), probabilities, masks, ())
    kept = [index for index, excluded in enumerate(excluding) if not excluded]
    removed = masks[np.flatnonzero(excluding)].any(axis=0)
    cleaned = probabilities[kept]  # fancy indexing: a copy
    cleaned[:, removed] = 0.0
    return Excluded(
        tuple(labels[index] for index in kept),
        cleaned,
        masks[kept] & ~removed,
        tuple(prompt_subject(label) for label in labels if is_exclusion(label)),
    )
