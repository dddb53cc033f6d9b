"""Steady masks: each prompt's probability map averaged over frames, thresholded with hysteresis.

A pixel near the threshold flickers from frame to frame with the camera's noise. Per prompt, the probability map
is an exponential moving average (`smoothing`: the newest frame's weight), and a pixel of the mask turns on at or
above `on_threshold` and off only below `off_threshold` (lower): noise around one threshold no longer toggles it.
The average and the mask start again when the prompt is new or changed (`end_prompts`), when the frame size
changes, and when a stamp goes back (a replayed recording); `reset` starts everything again. A frame stamped the same
as the last one is that frame again (republished, resent): it is not averaged in a second time. One filter per camera.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from clipseg_ros.engine import limits


@dataclass(frozen=True)
class TemporalSettings:
    enabled: bool = False
    smoothing: float = limits.DEFAULT_TEMPORAL_SMOOTHING  # the newest frame's weight in the average (1: none)
    on_threshold: float = limits.DEFAULT_TEMPORAL_ON
    off_threshold: float = limits.DEFAULT_TEMPORAL_OFF

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled must be true or false, got {self.enabled!r}")
        limits.check_fraction("smoothing", self.smoothing)
        limits.check_hysteresis(self.on_threshold, self.off_threshold)


class TemporalFilter:
    """Per prompt (by label) of one camera: the running average and the mask of the last frame."""

    def __init__(self, settings: TemporalSettings = TemporalSettings()):
        self.settings = settings
        self._average: dict[str, np.ndarray] = {}
        self._mask: dict[str, np.ndarray] = {}
        self._stamp: float | None = None

    def reset(self) -> None:
        self._average.clear()
        self._mask.clear()
        self._stamp = None

    def end_prompts(self, labels: Iterable[str]) -> None:
        """Start these prompts again: changed under the same label (a visual prompt replaced)."""
        for label in labels:
            self._average.pop(label, None)
            self._mask.pop(label, None)

    def filter(
        self, stamp_s: float, labels: Sequence[str], probabilities: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W) float32 averaged probabilities and (N, H, W) bool masks of this frame's (N, H, W) maps.

        Off: the maps as they are, masked at on_threshold.
        """
        settings = self.settings
        if not settings.enabled:
            return probabilities, probabilities >= settings.on_threshold
        if len(labels) != len(probabilities):
            raise ValueError(f"{len(labels)} labels for {len(probabilities)} probability maps")
        size = probabilities.shape[1:]
        known = next(iter(self._average.values()), None)
        if (self._stamp is not None and stamp_s < self._stamp) or (known is not None and known.shape != size):
            self.reset()
        repeat = stamp_s == self._stamp
        self._stamp = stamp_s
        for label in [label for label in self._average if label not in labels]:
            self.end_prompts([label])
        averaged = np.empty(probabilities.shape, np.float32)
        masks = np.empty(probabilities.shape, bool)
        for index, label in enumerate(labels):
            average, mask = self._average.get(label), self._mask.get(label)
            if average is None:
                average = probabilities[index].astype(np.float32, copy=True)
                mask = average >= settings.on_threshold
            elif not repeat:
                average += settings.smoothing * (probabilities[index] - average)
                mask = (average >= settings.on_threshold) | (mask & (average >= settings.off_threshold))
            self._average[label], self._mask[label] = average, mask
            averaged[index], masks[index] = average, mask
        return averaged, masks
