"""A dataset format a team can make by hand or export from a labelling tool.

    my_objects/
      annotations.jsonl     one JSON object per line:
                            {"image": "images/0001.jpg", "mask": "masks/0001_mug.png", "phrase": "blue mug",
                             "split": "train"}
      (or annotations.csv   with the header image,mask,phrase[,split])
      images/...  masks/... any layout; paths are relative to the dataset directory

A mask is a PNG (or any image OpenCV reads) of the image's size: nonzero pixels are the phrase's region.
An image may appear in many lines, one per phrase. "split" is optional; without it every line is in every split.
"""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path

import numpy as np

from ..image_io import read_mask
from .sources import Annotation, SegmentationSource

ANNOTATION_FILES = ("annotations.jsonl", "annotations.csv")
FIELDS = ("image", "mask", "phrase")


def is_folder_dataset(root: Path) -> bool:
    return any((root / name).is_file() for name in ANNOTATION_FILES)


def _stored_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask drawer for a mask stored at the image's size (the shape is already right)."""
    return read_mask(path)


class FolderSource(SegmentationSource):
    def __init__(self, root: str | Path, split: str | None = None):
        root = Path(root).expanduser()
        rows = _read_rows(root)
        annotations = []
        for line, row in rows:
            missing = [f for f in FIELDS if not row.get(f)]
            if missing:
                raise ValueError(f"{line}: missing {', '.join(missing)} (each line needs {', '.join(FIELDS)})")
            if split is not None and row.get("split") not in (None, "", split):
                continue
            draw = partial(_stored_mask, root / row["mask"])
            annotations.append(Annotation(root / row["image"], str(row["phrase"]).strip(), draw))
        super().__init__(annotations, name=f"folder dataset {root}" + (f" [{split}]" if split else ""))


def _read_rows(root: Path) -> list[tuple[str, dict]]:
    jsonl, csv_path = (root / name for name in ANNOTATION_FILES)
    if jsonl.is_file():
        rows = []
        with open(jsonl) as f:
            for number, text in enumerate(f, start=1):
                if text.strip():
                    rows.append((f"{jsonl}:{number}", json.loads(text)))
        return rows
    if csv_path.is_file():
        with open(csv_path, newline="") as f:
            return [(f"{csv_path}:{n}", row) for n, row in enumerate(csv.DictReader(f), start=2)]
    raise FileNotFoundError(f"{root} has none of {', '.join(ANNOTATION_FILES)}")


def write_annotations(root: Path, rows: list[dict]) -> Path:
    """Write `rows` (image, mask, phrase[, split] relative to `root`) as annotations.jsonl."""
    path = root / ANNOTATION_FILES[0]
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path
