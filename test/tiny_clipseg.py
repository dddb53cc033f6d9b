"""The tiny random CLIPSeg the tests run (no weights are downloaded), as a model and as a checkpoint."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from clipseg_ros.engine.backends.export_cache import cached_export
from clipseg_ros.engine.checkpoints import save_hf
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig


def tiny_model() -> ClipSeg:
    torch.manual_seed(0)
    return ClipSeg(ClipSegConfig.tiny()).eval()


def save_tiny_checkpoint(directory: Path) -> Path:
    """tiny_model() in the Hugging Face layout: what the node's `weights` parameter takes."""
    return save_hf(tiny_model(), directory)


def copy_session_export(session_cache: Path, own: Path, size: tuple[int, int]) -> None:
    """Into the export cache `own`, a copy of tiny_model()'s fp32 export at `size` (and its checksum) from the
    session's cache, where it is made once, by whichever test asks first (about 6 s): a test that damages or
    extends a cache of its own starts from it instead of exporting again."""
    before = os.environ.get("CLIPSEG_ROS_CACHE")
    os.environ["CLIPSEG_ROS_CACHE"] = str(session_cache)
    try:
        exported, _ = cached_export(tiny_model(), size)
    finally:
        if before is None:
            del os.environ["CLIPSEG_ROS_CACHE"]
        else:
            os.environ["CLIPSEG_ROS_CACHE"] = before
    for source in exported.parent.glob(f"{exported.name}*"):
        target = own / source.relative_to(session_cache)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
