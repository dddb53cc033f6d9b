"""clipseg-segment on image files, as a user runs it."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from background import Background
from tiny_clipseg import save_tiny_checkpoint

from clipseg_ros.commands import segment as segment_command

# The installed command, as a user runs it (make setup / colcon put it beside the interpreter).
CLIPSEG_SEGMENT = str(Path(sys.executable).parent / "clipseg-segment")


def start_early() -> Background:
    """The installed command on two images with text and visual prompts, started with the session
    (background.py)."""
    background = Background()
    tmp = background.directory
    weights = save_tiny_checkpoint(tmp / "weights")
    rng = np.random.default_rng(0)
    images = []
    for name, shape in (("kitchen", (90, 120, 3)), ("desk", (64, 64, 3))):
        path = tmp / f"{name}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, shape, dtype=np.uint8))
        images.append(str(path))
    mask = np.zeros((64, 64), np.uint8)
    mask[10:40, 10:40] = 255
    cv2.imwrite(str(tmp / "mask.png"), mask)
    background.start("segment", [
        CLIPSEG_SEGMENT, *images, "--prompt", "cup", "--prompt", "Red Mug!", "--visual-prompt", images[1],
        str(tmp / "mask.png"), "--weights", str(weights), "--out", str(tmp / "out"), "--input-size", "64", "96",
        "--device", "cpu", "--threshold", "0.3",
    ], cwd=tmp)  # fmt: skip
    return background


def test_cli_writes_masks_probabilities_and_overlays(early):
    run = early.result("segment")
    assert run.returncode == 0, run.stderr
    out = early.directory / "out"
    mask_png = cv2.imread(str(out / "kitchen_1_red-mug_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask_png.shape == (90, 120) and mask_png.dtype == np.uint8 and set(np.unique(mask_png)) <= {0, 255}
    probability = cv2.imread(str(out / "kitchen_0_cup_probability.png"), cv2.IMREAD_UNCHANGED)
    assert probability.dtype == np.uint16 and probability.shape == (90, 120)
    assert (out / "desk_2_visual-desk_mask.png").exists()
    overlay = cv2.imread(str(out / "desk_overlay.png"))
    assert overlay.shape == (64, 64, 3)


def test_cli_says_what_to_do_when_weights_are_missing(tmp_path, caplog):
    # The command's own main (the run above is the installed command): exit 2 and the way out, no traceback.
    assert segment_command.main(["x.png", "--prompt", "cup", "--weights", str(tmp_path / "none")]) == 2
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "not a hub id" in record.getMessage() and record.exc_info is None
