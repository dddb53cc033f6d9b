"""Scores a model on a segmentation source through the engine's Segmenter, as the node would run it.

Each image is read once and all its phrases are segmented in one call (one backbone pass); probabilities
come back at the image's own size and are compared with the full-resolution ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..segmenter import Segmenter
from .metrics import DEFAULT_THRESHOLD, SegmentationMetrics, threshold_grid
from .sources import SegmentationSource, read_rgb

MIOU_GROUPS = ("sample", "phrase")


@dataclass(frozen=True)
class EvalOptions:
    threshold: float = DEFAULT_THRESHOLD
    template: str = "{}"  # the prompt as a user would type it; "a photo of a {}." is the training style
    # mIoU averages IoU over "sample"s (phrase-region pairs: PhraseCut's own and the original code's
    # grouping) or over distinct "phrase"s (classes, as for Pascal)
    miou_over: str = "sample"
    negative_rate: float = 0.0  # adds, per annotation at this rate, an absent phrase with an empty target
    limit: int | None = None  # at most this many images (quick looks)
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.miou_over not in MIOU_GROUPS:
            raise ValueError(f"miou_over must be one of {MIOU_GROUPS}")
        if "{}" not in self.template:
            raise ValueError("the prompt template needs a {} for the phrase")


def evaluate(
    segmenter: Segmenter, source: SegmentationSource, options: EvalOptions = EvalOptions()
) -> SegmentationMetrics:
    metrics = SegmentationMetrics(threshold_grid(include=(options.threshold,)))
    rng = np.random.default_rng(options.seed)
    groups = list(source.by_image().items())[: options.limit]
    chunk = segmenter.max_prompts
    for image_path, indices in tqdm(groups, desc="eval", unit="image", disable=not options.progress):
        image = read_rgb(image_path)
        cases = [(i, source[i].phrase, source[i].draw_mask(image.shape[:2])) for i in indices]
        present = source.phrases_by_image[image_path]
        absent = [p for p in source.phrases if p not in present]
        empty = np.zeros(image.shape[:2], bool)
        for i in indices:
            if absent and rng.random() < options.negative_rate:
                cases.append((f"negative-{i}", absent[int(rng.integers(len(absent)))], empty))
        for start in range(0, len(cases), chunk):
            part = cases[start : start + chunk]
            prompts = [options.template.format(phrase) for _, phrase, _ in part]
            result = segmenter.segment(image, prompts, options.threshold)
            for (key, phrase, mask), probabilities in zip(part, result.probabilities, strict=True):
                metrics.add(probabilities, mask, phrase if options.miou_over == "phrase" else f"{key}")
    return metrics
