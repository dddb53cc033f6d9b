"""PhraseCut+ training samples as the paper builds them, from any segmentation source.

Each sample is a query image, a target mask and a condition:
- text: the phrase in a prompt template drawn from the paper's list;
- visual support: another image with the same phrase, engineered by the engine's visual prompt code
  (crop, blur, darken); when no other image has the phrase the sample is text only;
- the text weight w of the interpolation `cond = w * text + (1 - w) * visual`, w ~ U(0, 0.5) as the
  released models were trained (mix_text_max 0.5), and w = 1 for text-only samples;
- negatives at `negative_rate`: a phrase absent from the image (with its own support), target empty;
- at `text_only_rate`, a sample conditioned on its text alone (w = 1) though a support exists: a CLIP whose
  text and image embeddings are not aligned (a random one) otherwise learns text prompts from the few
  phrases that have no support, and answers typed prompts poorly.

Item k is drawn from a generator seeded with (seed, k), whatever the worker that loads it: the data of a run
depend only on the seed, so a resumed run sees the same batches it would have seen without a stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from clipseg_ros.engine.preprocess import to_model_input
from clipseg_ros.engine.visual_prompt import VisualPromptStyle, engineer_visual_prompt
from clipseg_ros.train.sources import SegmentationSource

# The original training's "shuffle+" templates.
PROMPT_TEMPLATES = (
    "a photo of a {}.",
    "a photograph of a {}.",
    "an image of a {}.",
    "{}.",
    "a cropped photo of a {}.",
    "a good photo of a {}.",
    "a photo of one {}.",
    "a bad photo of a {}.",
    "a photo of the {}.",
)
MAX_TEXT_WEIGHT = 0.5
_TRIES = 20  # rejection-sampling attempts before falling back to listing every candidate


@dataclass(frozen=True)
class SamplingOptions:
    image_size: int = 352
    negative_rate: float = 0.2
    visual: bool = True  # False: text conditionals only (the paper's PC rather than PC+)
    text_only_rate: float = 0.0  # the paper's sampling: 0
    templates: tuple[str, ...] = PROMPT_TEMPLATES
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.negative_rate < 1.0:
            raise ValueError(f"negative_rate must be in [0, 1), got {self.negative_rate}")
        if not 0.0 <= self.text_only_rate <= 1.0:
            raise ValueError(f"text_only_rate must be in [0, 1], got {self.text_only_rate}")
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError("every prompt template needs a {} for the phrase")


def resize_mask(mask: np.ndarray, size: int) -> torch.Tensor:
    """A bool (H, W) mask as float {0, 1} (size, size), resized like the image (antialiased bilinear)."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    if m.shape[-2:] != (size, size):
        m = F.interpolate(m, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (m[0, 0] >= 0.5).float()


class PhraseCutPlus(Dataset):
    """Training samples indexed by a running item number (any non-negative int)."""

    def __init__(self, source: SegmentationSource, options: SamplingOptions = SamplingOptions()):
        self.source = source
        self.options = options
        self.style = VisualPromptStyle(size=options.image_size)

    def __getitem__(self, item: int) -> dict:
        rng = np.random.default_rng([self.options.seed, int(item)])
        index = int(rng.integers(len(self.source)))
        image, mask = self.source.load(index)
        annotation = self.source[index]
        phrase = annotation.phrase
        if rng.random() < self.options.negative_rate:
            negative = self._absent_phrase(rng, annotation.image_path)
            if negative is not None:
                phrase, mask = negative, np.zeros_like(mask)
        # drawn only when asked for: the paper's sampling keeps the data of a given seed
        text_only = self.options.text_only_rate > 0 and rng.random() < self.options.text_only_rate
        support, has_support = self._support(rng, phrase, annotation.image_path, text_only)
        template = self.options.templates[int(rng.integers(len(self.options.templates)))]
        size = (self.options.image_size, self.options.image_size)
        return {
            "image": to_model_input([image], size)[0],
            "target": resize_mask(mask, self.options.image_size),
            "text": template.format(phrase),
            "phrase": phrase,
            "index": index,  # the query's annotation in the source
            "support": support,
            "text_weight": float(rng.uniform(0.0, MAX_TEXT_WEIGHT)) if has_support else 1.0,
        }

    def _absent_phrase(self, rng: np.random.Generator, image_path: Path) -> str | None:
        present = self.source.phrases_by_image[image_path]
        phrases = self.source.phrases
        for _ in range(_TRIES):
            candidate = phrases[int(rng.integers(len(phrases)))]
            if candidate not in present:
                return candidate
        absent = [p for p in phrases if p not in present]
        return absent[int(rng.integers(len(absent)))] if absent else None

    def _support(
        self, rng: np.random.Generator, phrase: str, image_path: Path, text_only: bool
    ) -> tuple[torch.Tensor, bool]:
        """An engineered visual prompt of `phrase` from another image, or zeros when there is none."""
        size = self.options.image_size
        empty = torch.zeros(3, size, size)
        if not self.options.visual or text_only:
            return empty, False
        choice = self.source.from_another_image(phrase, image_path, rng)
        if choice is None:
            return empty, False
        image, mask = self.source.load(choice)
        if not mask.any():
            return empty, False  # an empty support mask shows nothing to crop to
        normalised = to_model_input([image], image.shape[:2])[0]
        return engineer_visual_prompt(normalised, torch.from_numpy(mask.astype(np.float32)), self.style), True
