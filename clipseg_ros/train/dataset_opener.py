"""Which reader a dataset directory needs: the one place that knows every format (no reader imports it)."""

from __future__ import annotations

from pathlib import Path

from clipseg_ros.train.folder_dataset import FolderSource, is_folder_dataset
from clipseg_ros.train.phrasecut import PhraseCutSource, is_phrasecut
from clipseg_ros.train.sources import SegmentationSource


def open_source(path: str | Path, split: str | None = None) -> SegmentationSource:
    """The reader for a dataset directory: PhraseCut (refer_*.json / refvg_*.json) or the folder format."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset directory {root} does not exist")
    if is_phrasecut(root):
        return PhraseCutSource(root, split or "train")
    if is_folder_dataset(root):
        return FolderSource(root, split)
    raise ValueError(
        f"{root} is neither a PhraseCut directory (refer_<split>.json + images/) nor a folder dataset "
        "(annotations.jsonl or annotations.csv); see clipseg_ros/train/folder_dataset.py"
    )
