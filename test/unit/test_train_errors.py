"""clipseg-train on a folder dataset with a bad file says which file and why in one line, before or during
training, with the default data-loading workers (an error raised in a worker used to arrive with the worker's
whole traceback as its text)."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

from clipseg_ros.commands import train as train_command


def write_dataset(root, mask_shape=(32, 32)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for name in ("a", "b"):
        cv2.imwrite(str(root / "images" / f"{name}.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        mask = np.zeros(mask_shape if name == "b" else (32, 32), np.uint8)
        mask[:16] = 255
        cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)
        rows.append({"image": f"images/{name}.png", "mask": f"masks/{name}.png", "phrase": f"top of {name}"})
    (root / "annotations.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def train(tiny_checkpoint, data, out) -> int:
    # default --workers: the loader's worker processes are where a sample's error is raised
    return train_command.main(["--data", str(data), "--out", str(out), "--init", str(tiny_checkpoint), "--steps",
                               "2", "--batch-size", "2", "--image-size", "64", "--quiet"])


def error_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def test_a_mask_of_another_size_is_named_before_training(tiny_checkpoint, tmp_path, caplog):
    data = write_dataset(tmp_path / "data", mask_shape=(30, 32))
    assert train(tiny_checkpoint, data, tmp_path / "run") == 2
    (error,) = error_lines(caplog)
    assert error == (f"{data / 'annotations.jsonl'}:2: mask {data / 'masks' / 'b.png'} is 32x30 pixels but its "
                     f"image {data / 'images' / 'b.png'} is 32x32: a mask must have its image's size")
    assert not (tmp_path / "run").exists()  # refused when the dataset is opened


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_an_unreadable_image_is_named_in_one_line(tiny_checkpoint, tmp_path, caplog, damage):
    data = write_dataset(tmp_path / "data")
    image = data / "images" / "b.png"
    if damage == "missing":
        image.unlink()
    else:  # the header (and so the size) reads; the pixels do not: found by a loader worker
        image.write_bytes(image.read_bytes()[:60])
    assert train(tiny_checkpoint, data, tmp_path / "run") == 2
    (error,) = error_lines(caplog)
    assert str(image) in error and "cannot read image" in error and "\n" not in error, error
