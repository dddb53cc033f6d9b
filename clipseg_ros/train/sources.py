"""What every dataset reader gives training and evaluation: annotated phrase-mask pairs on images.

A reader (PhraseCut, the folder format) lists `Annotation`s: which image, which phrase, and how to draw the
phrase's mask. Images and masks are loaded only when a sample needs them, so a reader over 300k PhraseCut
phrases costs its annotation file and nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipseg_ros.engine.image_io import read_rgb


@dataclass(frozen=True)
class Annotation:
    image_path: Path
    phrase: str
    # (height, width) of the loaded image -> bool mask (H, W); readers differ in how masks are stored.
    # A module-level function or a partial of one, so sources pickle into spawned loader workers.
    draw_mask: Callable[[tuple[int, int]], np.ndarray]


class SegmentationSource(Sequence[Annotation]):
    """A list of annotations with the look-ups PhraseCut+ sampling needs."""

    def __init__(self, annotations: list[Annotation], name: str):
        if not annotations:
            raise ValueError(f"{name}: no annotations")
        self.annotations = annotations
        self.name = name
        by_phrase: dict[str, list[int]] = {}
        by_image: dict[Path, set[str]] = {}
        for index, annotation in enumerate(annotations):
            by_phrase.setdefault(annotation.phrase, []).append(index)
            by_image.setdefault(annotation.image_path, set()).add(annotation.phrase)
        self.indices_by_phrase = by_phrase
        self.phrases_by_image = by_image
        self.phrases = sorted(by_phrase)

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, index: int) -> Annotation:
        return self.annotations[index]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image RGB uint8 (H, W, 3) and mask bool (H, W) of annotation `index`."""
        annotation = self.annotations[index]
        image = read_rgb(annotation.image_path)
        mask = annotation.draw_mask(image.shape[:2])
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"{annotation.image_path}: mask {mask.shape} does not match the image {image.shape[:2]}"
            )
        return image, mask

    def from_another_image(self, phrase: str, image_path: Path, rng: np.random.Generator) -> int | None:
        """A random annotation of `phrase` on an image other than `image_path` (a support sample), if any."""
        candidates = self.indices_by_phrase.get(phrase, [])
        for _ in range(20):  # rejection sampling: cheap for the common phrases with thousands of samples
            if not candidates:
                break
            index = candidates[int(rng.integers(len(candidates)))]
            if self.annotations[index].image_path != image_path:
                return index
        others = [i for i in candidates if self.annotations[i].image_path != image_path]
        return others[int(rng.integers(len(others)))] if others else None

    def by_image(self) -> dict[Path, list[int]]:
        """Annotation indices grouped by image, in first-seen order (evaluation runs each image once)."""
        groups: dict[Path, list[int]] = {}
        for index, annotation in enumerate(self.annotations):
            groups.setdefault(annotation.image_path, []).append(index)
        return groups
