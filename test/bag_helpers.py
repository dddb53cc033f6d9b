"""What the tests of clipseg-label-bags share: one way to run the command on bags, and a folder's digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

from clipseg_ros.commands.label_bags import main

PROMPTS = "red square; blue circle"


def label(params_file: Path, checkpoint: Path, out: Path, *bags: Path, extra: tuple[str, ...] = ()) -> int:
    args = [*map(str, bags), "--params-file", str(params_file), "--weights", str(checkpoint), "--prompts", PROMPTS]
    args += ["--image-topic", "/camera/image", "--depth-topic", "/camera/depth/image", "--output", str(out)]
    return main([*args, "--quiet", *extra])


def digests(folder: Path) -> dict[str, str]:
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
