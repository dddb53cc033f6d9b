"""Scores a model on a segmentation source through the engine's Segmenter, as the node would run it.

Each image is read once and all its phrases are segmented in one call (one backbone pass); probabilities
come back at the image's own size and are compared with the full-resolution ground truth.
Prompts are the phrases as text (PhraseCut's protocol) or, one-shot, visual prompts: another image's
annotation of the same phrase (the paper's Pascal-5i protocol); a phrase on one image only has no such
support and is left out in that mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipseg_ros.engine.image_io import read_rgb
from clipseg_ros.engine.limits import MAX_PROMPTS
from clipseg_ros.engine.progress import progress
from clipseg_ros.engine.segmenter import Prompt, Segmenter
from clipseg_ros.engine.visual_prompt import VisualPrompt
from clipseg_ros.train.metrics import DEFAULT_THRESHOLD, SegmentationMetrics, threshold_grid
from clipseg_ros.train.sources import SegmentationSource

MIOU_GROUPS = ("sample", "phrase")
PROMPT_KINDS = ("text", "visual")


@dataclass(frozen=True)
class EvalOptions:
    threshold: float = DEFAULT_THRESHOLD
    prompt: str = "text"  # or "visual": one-shot, a support from another image of the phrase
    template: str = "{}"  # text prompts as a user would type them; "a photo of a {}." is the training style
    # mIoU averages IoU over "sample"s (phrase-region pairs: PhraseCut's own and the original code's
    # grouping) or over distinct "phrase"s (classes, as for Pascal)
    miou_over: str = "sample"
    negative_rate: float = 0.0  # adds, per annotation at this rate, an absent phrase with an empty target
    limit: int | None = None  # at most this many images (quick looks)
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.prompt not in PROMPT_KINDS:
            raise ValueError(f"prompt must be one of {PROMPT_KINDS}")
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
    chunk = MAX_PROMPTS
    for image_path, indices in progress(groups, "eval", "image", enabled=options.progress):
        image = read_rgb(image_path)
        cases = [(str(i), source[i].phrase, source[i].draw_mask(image.shape[:2])) for i in indices]
        present = source.phrases_by_image[image_path]
        absent = [p for p in source.phrases if p not in present]
        empty = np.zeros(image.shape[:2], bool)
        for i in indices:
            if absent and rng.random() < options.negative_rate:
                cases.append((f"negative-{i}", absent[int(rng.integers(len(absent)))], empty))
        prompted = [(case, _prompt(source, case[1], image_path, rng, options)) for case in cases]
        prompted = [(case, prompt) for case, prompt in prompted if prompt is not None]
        for start in range(0, len(prompted), chunk):
            part = prompted[start : start + chunk]
            result = segmenter.segment(image, [prompt for _, prompt in part], options.threshold)
            for ((key, phrase, mask), _), probabilities in zip(part, result.probabilities, strict=True):
                metrics.add(probabilities, mask, phrase if options.miou_over == "phrase" else key)
    return metrics


def _prompt(
    source: SegmentationSource, phrase: str, image_path: Path, rng: np.random.Generator, options: EvalOptions
) -> Prompt | None:
    if options.prompt == "text":
        return options.template.format(phrase)
    support = source.from_another_image(phrase, image_path, rng)
    if support is None:
        return None
    support_image, support_mask = source.load(support)
    if not support_mask.any():
        return None  # a degenerate annotation shows nothing to prompt with
    return VisualPrompt(support_image, support_mask, label=f"{phrase} (support {support})")
