"""Segmentation metrics of the paper: mIoU, IoU_FG, AP and IoU_BIN, at one threshold and over a sweep.

Definitions (CLIPSeg, Lüddecke & Ecker 2022, and its PhraseCut tables):
- IoU_FG: foreground IoU of the whole set, tp / (tp + fp + fn) summed over all pixels of all samples;
- mIoU: the mean over groups of each group's foreground IoU, its pixels summed over its samples; a group is
  whatever key `add` gets: a phrase (class) or a single phrase-region sample (PhraseCut's grouping);
- IoU_BIN: the mean of foreground and background IoU of the whole set;
- AP: average precision of the pixel probabilities against the foreground pixels.

A pixel is predicted foreground when its probability is at least the threshold, as in the engine's masks.
Counts are kept for a fixed grid of thresholds, so the threshold sweep, the precision-recall curve and AP
come from one pass over the data.
An IoU whose union is empty (nothing to find, nothing predicted) is 1.0: that answer is right, and a set of
negative samples should score perfect when the model stays silent on them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_THRESHOLD = 0.3  # the paper's PhraseCut table


def threshold_grid(step: float = 0.01, include: tuple[float, ...] = (DEFAULT_THRESHOLD,)) -> np.ndarray:
    """Thresholds strictly between 0 and 1 every `step`, plus the ones in `include`."""
    grid = np.round(np.arange(step, 1.0, step), 6)
    return np.unique(np.concatenate([grid, np.asarray(include, dtype=float)]))


@dataclass(frozen=True)
class Counts:
    """Pixel counts per threshold (arrays of the grid's length)."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray


def _iou(hit: np.ndarray, miss_a: np.ndarray, miss_b: np.ndarray) -> np.ndarray:
    union = hit + miss_a + miss_b
    return np.where(union > 0, hit / np.maximum(union, 1), 1.0)


class SegmentationMetrics:
    """Accumulates per-threshold pixel counts over samples, overall and per phrase."""

    def __init__(self, thresholds: np.ndarray | None = None):
        self.thresholds = threshold_grid() if thresholds is None else np.sort(np.asarray(thresholds, float))
        self._edges = torch.as_tensor(self.thresholds, dtype=torch.float64)
        n = len(self.thresholds)
        self._positive = np.zeros(n, dtype=np.int64)  # predicted fg pixels, by threshold
        self._tp = np.zeros(n, dtype=np.int64)
        self._fg_pixels = 0
        self._pixels = 0
        self._by_group: dict[str, list[np.ndarray]] = defaultdict(
            lambda: [np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(1, np.int64)]
        )
        self.samples = 0

    def add(self, probabilities: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, group: str) -> None:
        """One sample: foreground probabilities (H, W), its ground-truth mask (H, W, nonzero = fg) and
        the mIoU group it counts towards."""
        probs = torch.as_tensor(probabilities).detach().reshape(-1).to("cpu", torch.float64)
        fg = torch.as_tensor(target).detach().reshape(-1).to("cpu") > 0.5
        if probs.numel() != fg.numel():
            raise ValueError(f"prediction has {probs.numel()} pixels, target {fg.numel()}")
        positive = self._above_each_threshold(probs)
        tp = self._above_each_threshold(probs[fg])
        n_fg = int(fg.sum())
        self._positive += positive
        self._tp += tp
        self._fg_pixels += n_fg
        self._pixels += fg.numel()
        group_positive, group_tp, group_fg = self._by_group[group]
        group_positive += positive
        group_tp += tp
        group_fg += n_fg
        self.samples += 1

    def _above_each_threshold(self, probs: torch.Tensor) -> np.ndarray:
        # bucket k = how many thresholds are <= p, so p >= t_j exactly for j < k;
        # a reverse cumulative sum of the bucket histogram gives the count at or above each threshold.
        buckets = torch.searchsorted(self._edges, probs, side="right")
        histogram = torch.bincount(buckets, minlength=len(self.thresholds) + 1).numpy()
        return np.cumsum(histogram[::-1])[::-1][1:].astype(np.int64)

    def counts(self) -> Counts:
        fp = self._positive - self._tp
        fn = self._fg_pixels - self._tp
        tn = self._pixels - self._tp - fp - fn
        return Counts(self._tp.copy(), fp, fn, tn)

    # --- summaries -------------------------------------------------------------------------------

    def iou_fg(self) -> np.ndarray:
        c = self.counts()
        return _iou(c.tp, c.fp, c.fn)

    def iou_bin(self) -> np.ndarray:
        c = self.counts()
        return 0.5 * (_iou(c.tp, c.fp, c.fn) + _iou(c.tn, c.fn, c.fp))

    def miou(self) -> np.ndarray:
        if not self._by_group:
            return np.full(len(self.thresholds), np.nan)
        per_group = [
            _iou(tp, positive - tp, fg[0] - tp) for positive, tp, fg in self._by_group.values()
        ]
        return np.mean(per_group, axis=0)

    def precision_recall(self) -> tuple[np.ndarray, np.ndarray]:
        """Precision and recall per threshold; precision is 1.0 where nothing is predicted."""
        c = self.counts()
        predicted = c.tp + c.fp
        precision = np.where(predicted > 0, c.tp / np.maximum(predicted, 1), 1.0)
        recall = c.tp / self._fg_pixels if self._fg_pixels else np.zeros(len(self.thresholds))
        return precision, recall

    def average_precision(self) -> float | None:
        """Area under the step precision-recall curve (sum of recall gains times precision).

        Exact for predictions that take only grid values, otherwise the grid's approximation. None when
        the set has no foreground pixel: precision over an empty recall range is undefined.
        """
        if not self._fg_pixels:
            return None
        precision, recall = self.precision_recall()
        # walk from the highest threshold (lowest recall) down; recall starts at 0
        recall_desc, precision_desc = recall[::-1], precision[::-1]
        gains = np.diff(np.concatenate([[0.0], recall_desc]))
        return float(np.sum(gains * precision_desc))

    def at(self, threshold: float) -> dict[str, float | None]:
        """mIoU, IoU_FG, IoU_BIN at `threshold` (must be on the grid) and AP, as fractions."""
        matches = np.flatnonzero(np.isclose(self.thresholds, threshold))
        if not len(matches):
            raise ValueError(f"threshold {threshold} is not on the metric's grid; add it to `thresholds`")
        j = int(matches[0])
        return {
            "mIoU": float(self.miou()[j]),
            "IoU_FG": float(self.iou_fg()[j]),
            "IoU_BIN": float(self.iou_bin()[j]),
            "AP": self.average_precision(),
        }

    def sweep(self) -> dict[str, list[float]]:
        precision, recall = self.precision_recall()
        return {
            "threshold": self.thresholds.tolist(),
            "mIoU": self.miou().tolist(),
            "IoU_FG": self.iou_fg().tolist(),
            "IoU_BIN": self.iou_bin().tolist(),
            "precision": precision.tolist(),
            "recall": recall.tolist(),
        }

    @property
    def groups(self) -> int:
        return len(self._by_group)
