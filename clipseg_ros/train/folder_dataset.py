"""A dataset format a team can make by hand or export from a labelling tool.

    my_objects/
      annotations.jsonl     one JSON object per line:
                            {"image": "images/0001.jpg", "mask": "masks/0001_mug.png", "phrase": "blue mug",
                             "split": "train"}
      (or annotations.csv   with the header image,mask,phrase[,split])
      images/...  masks/... any layout; paths are relative to the dataset directory

A mask is a PNG (or any image OpenCV reads) of the image's size: nonzero pixels are the phrase's region.
An image may appear in many lines, one per phrase. "split" is optional; without it every line is in every split.
Every image and mask is checked when the dataset is opened (sizes from PNG and JPEG headers, other formats
decoded): a missing file or a mask of another size is reported with its line before training starts, not
from inside a data-loading worker halfway through.
"""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from clipseg_ros.engine.image_header import ImageHeaderError, declared_size
from clipseg_ros.engine.image_io import read_mask
from clipseg_ros.train.sources import Annotation, SegmentationSource

ANNOTATION_FILES = ("annotations.jsonl", "annotations.csv")
FIELDS = ("image", "mask", "phrase")
# Enough of a file for its header: PNG's comes first, JPEG's after its EXIF segment (at most 64 KiB).
_HEADER_BYTES = 1 << 16


def is_folder_dataset(root: Path) -> bool:
    return any((root / name).is_file() for name in ANNOTATION_FILES)


def _stored_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask drawer for a mask stored at the image's size (the shape is already right)."""
    return read_mask(path)


class FolderSource(SegmentationSource):
    def __init__(self, root: str | Path, split: str | None = None):
        root = Path(root).expanduser()
        rows = _read_rows(root)
        annotations, sizes = [], {}
        for line, row in rows:
            missing = [f for f in FIELDS if not row.get(f)]
            if missing:
                raise ValueError(f"{line}: missing {', '.join(missing)} (each line needs {', '.join(FIELDS)})")
            if split is not None and row.get("split") not in (None, "", split):
                continue
            image, mask = root / row["image"], root / row["mask"]
            _check_sizes(line, image, mask, sizes)
            annotations.append(Annotation(image, str(row["phrase"]).strip(), partial(_stored_mask, mask)))
        super().__init__(annotations, name=f"folder dataset {root}" + (f" [{split}]" if split else ""))


def _check_sizes(line: str, image: Path, mask: Path, sizes: dict[Path, tuple[int, int]]) -> None:
    """Refuse a line whose image or mask cannot be read, or whose mask is not the image's size."""
    for path, what in ((image, "image"), (mask, "mask")):
        if path not in sizes:
            size = _stored_size(path)
            if size is None:
                raise FileNotFoundError(f"{line}: cannot read {what} {path}: missing, unreadable or not an image")
            sizes[path] = size
    if sizes[image] != sizes[mask]:
        (ih, iw), (mh, mw) = sizes[image], sizes[mask]
        raise ValueError(f"{line}: mask {mask} is {mw}x{mh} pixels but its image {image} is {iw}x{ih}: a mask "
                         f"must have its image's size")


def _stored_size(path: Path) -> tuple[int, int] | None:
    """(height, width) of an image file, from its header where it is a PNG or JPEG; None if it cannot be read."""
    try:
        with open(path, "rb") as file:
            _, width, height = declared_size(file.read(_HEADER_BYTES))
        return height, width
    except OSError:
        return None
    except ImageHeaderError:  # another format, or a header past the bytes read: OpenCV decodes it
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        return None if pixels is None else pixels.shape[:2]


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
