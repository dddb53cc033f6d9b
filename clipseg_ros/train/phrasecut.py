"""Reader of VGPhraseCut (Wu et al., CVPR 2020), the dataset CLIPSeg trains and is scored on.

Layout of the release (directory VGPhraseCut_v0/):
    refer_<split>.json      a list of tasks, one per phrase-region pair: `task_id`, `image_id`, `phrase`,
                            `Polygons` (one list per instance, of polygons, of [x, y] points), `instance_boxes`
                            (xywh), `ann_ids`, `phrase_structure`; some copies name it refvg_<split>.json
    image_data_split.json   optional: per image `image_id`, `width`, `height`, `split`, ...
    images/<image_id>.jpg   the Visual Genome images
A split name may join several with "_" ("val_miniv"), as the dataset's own loader allows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from clipseg_ros.train.sources import Annotation, SegmentationSource

log = logging.getLogger(__name__)

ANNOTATION_PATTERNS = ("refer_{}.json", "refvg_{}.json")
IMAGE_DATA = "image_data_split.json"


def is_phrasecut(root: Path) -> bool:
    return (root / "images").is_dir() and any(
        next(root.glob(pattern.format("*")), None) is not None for pattern in ANNOTATION_PATTERNS
    )


def polygons_to_mask(
    instances: Sequence[Sequence[Sequence[Sequence[float]]]],
    size: tuple[int, int],
    scale: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """The union of all polygons of all instances as a bool mask of `size` (height, width).

    `scale` (sx, sy) maps annotation coordinates to the image when the two sizes differ.
    """
    mask = np.zeros(size, dtype=np.uint8)
    for polygons in instances:
        for polygon in polygons:
            if len(polygon) < 3:
                continue  # a point or a line encloses no pixel
            points = np.asarray(polygon, dtype=np.float64) * np.asarray(scale)
            cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


class PhraseCutSource(SegmentationSource):
    def __init__(self, root: str | Path, split: str = "train"):
        root = Path(root).expanduser()
        tasks = []
        for part in split.split("_"):
            tasks.extend(_read_json(_annotation_file(root, part)))
        sizes = _annotated_sizes(root)
        annotations = []
        for task in tasks:
            try:
                annotations.append(self._annotation(root, task, sizes))
            except (KeyError, TypeError) as exc:
                raise ValueError(
                    f"PhraseCut task {task.get('task_id', '?') if isinstance(task, dict) else task!r} "
                    f"lacks {exc}: expected image_id, phrase and Polygons"
                ) from exc
        super().__init__(annotations, name=f"PhraseCut {split} ({root})")

    @staticmethod
    def _annotation(root: Path, task: dict, sizes: dict[int, tuple[int, int]]) -> Annotation:
        image_id = int(task["image_id"])
        draw = partial(_draw_task, task["Polygons"], sizes.get(image_id))
        return Annotation(root / "images" / f"{image_id}.jpg", str(task["phrase"]).strip(), draw)


def _draw_task(instances: list, annotated: tuple[int, int] | None, shape: tuple[int, int]) -> np.ndarray:
    # polygons are in the annotated size's pixels; a few images were stored at another size
    scale = (1.0, 1.0) if annotated is None else (shape[1] / annotated[1], shape[0] / annotated[0])
    return polygons_to_mask(instances, shape, scale)


def _annotation_file(root: Path, split: str) -> Path:
    for pattern in ANNOTATION_PATTERNS:
        path = root / pattern.format(split)
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"no PhraseCut annotations for split {split!r} in {root} "
        f"(looked for {', '.join(p.format(split) for p in ANNOTATION_PATTERNS)})"
    )


def _annotated_sizes(root: Path) -> dict[int, tuple[int, int]]:
    """(height, width) per image id from image_data_split.json, when the release has it."""
    path = root / IMAGE_DATA
    if not path.is_file():
        return {}
    return {int(d["image_id"]): (int(d["height"]), int(d["width"])) for d in _read_json(path)}


def _read_json(path: Path) -> list:
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of tasks, found {type(data).__name__}")
    log.info("read %d entries from %s", len(data), path)
    return data
