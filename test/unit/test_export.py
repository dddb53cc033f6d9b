"""ONNX export of the image path, its int8 versions, and the clipseg-export / clipseg-quant-check commands.

Real export (torch.onnx), real ONNX Runtime, on a tiny random model at a non-square input size.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from background import Background

from clipseg_ros.commands import export as export_command
from clipseg_ros.commands import quant_check
from clipseg_ros.engine.backends.export_cache import cached_export
from clipseg_ros.engine.backends.onnx_export import (
    INPUT_NAMES,
    ExportError,
    export_onnx,
    quantize_dynamic,
    quantize_static,
    read_info,
    relative_error,
    weights_digest,
)
from clipseg_ros.engine.checkpoints import empty_model, load_hf, save_hf
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig

SIZE = (64, 96)  # height, width: not square, multiples of the patch size


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ClipSeg(ClipSegConfig.tiny()).eval()


@pytest.fixture(scope="module")
def exported(model, _runtime_cache_directory) -> Path:
    """The session's export of these weights at SIZE (the runtime cache's: test_backends' too), made once; the
    command test below runs export_onnx itself."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLIPSEG_ROS_CACHE", str(_runtime_cache_directory))
        return cached_export(model, SIZE)[0]


def inputs(model: ClipSeg, images: int, prompts: int, seed: int = 1) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(images, 3, *SIZE, generator=generator)
    conditionals = torch.randn(prompts, model.config.projection_dim, generator=generator)
    return pixels, conditionals, torch.arange(images).repeat_interleave(prompts)[: prompts * images]


def run(path: Path, pixels: torch.Tensor, conditionals: torch.Tensor, image_index: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = dict(zip(INPUT_NAMES, (pixels.numpy(), conditionals.numpy(), image_index.numpy()), strict=True))
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("prompts", [1, 8])
def test_onnx_runtime_logits_equal_torch(model, exported, prompts):
    pixels, conditionals, _ = inputs(model, images=2, prompts=prompts)
    # Every prompt on both images, as the Segmenter batches them.
    conditionals = conditionals.repeat(2, 1)
    image_index = torch.arange(2).repeat_interleave(prompts)
    with torch.no_grad():
        reference = model(pixels, conditionals, image_index).numpy()
    logits = run(exported, pixels, conditionals, image_index)
    assert logits.shape == reference.shape == (2 * prompts, *SIZE)
    assert reference.max() - reference.min() > 0.1  # a spread to be relative to
    assert relative_error(logits, reference) <= 1e-4


def test_export_writes_config_and_metadata(model, exported):
    config = json.loads((exported.parent / "config.json").read_text())
    assert config["reduce_dim"] == model.config.reduce_dim
    info = read_info(exported)
    assert info.input_size == SIZE and info.precision == "fp32" and info.weights_digest == weights_digest(model)


def test_int8_dynamic_and_static_run_with_sane_shapes(model, exported, tmp_path):
    pixels, conditionals, _ = inputs(model, images=2, prompts=3)
    image_index = torch.tensor([0, 1, 1])
    with torch.no_grad():
        reference = model(pixels, conditionals, image_index).numpy()
    feeds = [dict(zip(INPUT_NAMES, (p.numpy(), c.numpy(), i.numpy()), strict=True))
             for p, c, i in (inputs(model, images=1, prompts=4, seed=s) for s in range(3))]
    files = {"int8-dynamic": quantize_dynamic(exported, tmp_path / "dynamic.onnx"),
             "int8-static": quantize_static(exported, tmp_path / "static.onnx", feeds)}
    for precision, path in files.items():
        logits = run(path, pixels, conditionals, image_index)
        assert logits.shape == reference.shape and np.isfinite(logits).all()
        assert read_info(path).precision == precision
        assert path.stat().st_size < exported.stat().st_size
        # Untrained weights say nothing of int8's accuracy (clipseg-quant-check measures it on real
        # ones), but a broken quantisation would not even correlate with fp32.
        assert np.corrcoef(logits.ravel(), reference.ravel())[0, 1] > 0.9, precision


def test_export_refuses_a_checkpoint_with_nan_weights(model, tmp_path):
    broken = ClipSeg(model.config).eval()
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.decoder.film_mul.weight[0, 0] = float("nan")
    with pytest.raises(ExportError, match=r"cannot be exported.*NaN or infinite values in decoder\.film_mul\.weight"):
        export_onnx(load_hf(str(save_hf(broken, tmp_path / "ckpt"))), tmp_path / "model.onnx", SIZE)
    assert not (tmp_path / "model.onnx").exists()


def test_export_refuses_unloaded_and_non_fp32_weights(model, tmp_path):
    with pytest.raises(ExportError, match="weights never loaded"):
        export_onnx(empty_model(model.config), tmp_path / "model.onnx", SIZE)
    half = ClipSeg(model.config).eval().to(torch.bfloat16)
    with pytest.raises(ExportError, match=r"fp32.*torch\.bfloat16"):
        export_onnx(half, tmp_path / "model.onnx", SIZE)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        export_onnx(model, tmp_path / "model.onnx", (64, 72))
    with pytest.raises(ExportError, match="takes a clipseg_ros ClipSeg model"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "model.onnx", SIZE)


def write_images(directory: Path, count: int) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    paths = []
    for k in range(count):
        path = directory / f"frame{k}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))
        paths.append(str(path))
    return paths


def test_export_command_with_static_int8(tiny_checkpoint, tmp_path):
    images = write_images(tmp_path / "calibration", 2)
    out = tmp_path / "export"
    code = export_command.main(["--weights", str(tiny_checkpoint), "--input-size", "64", "96", "--out", str(out),
                                "--int8", "static", "--calibration-images", *images,
                                "--calibration-prompts", "a cup", "the floor"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"model.onnx", "model_int8_static.onnx", "config.json"}
    assert read_info(out / "model_int8_static.onnx").input_size == SIZE


def test_export_command_reports_bad_input(tiny_checkpoint, tmp_path, caplog):
    assert export_command.main(["--weights", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "no such directory" in caplog.text
    assert export_command.main(["--weights", str(tiny_checkpoint), "--input-size", "64", "--int8", "static",
                                "--out", str(tmp_path)]) == 2
    assert "needs --calibration-images and --calibration-prompts" in caplog.text
    assert not (tmp_path / "model.onnx").exists()  # refused before the export, not after it


def test_quant_check_reports_agreement_per_prompt(tiny_checkpoint, exported, runtime_cache, tmp_path, capsys):
    images = write_images(tmp_path / "images", 2)
    report = tmp_path / "report.json"
    code = quant_check.main([*images, "--prompt", "a cup", "--prompt", "the floor", "--weights",
                             str(tiny_checkpoint), "--input-size", "64", "96", "--json", str(report)])
    assert code == 0
    table = capsys.readouterr().out
    assert "int8 dynamic vs fp32" in table and "a cup" in table and "min IoU" in table
    data = json.loads(report.read_text())
    assert set(data["per_prompt"]) == {"a cup", "the floor"}
    assert len(data["per_image"]) == 4
    for row in data["per_image"]:
        assert 0.0 <= row["iou"] <= 1.0 and 0.0 <= row["max_abs_diff"] <= 1.0
    # A given file instead: the fp32 export of the same weights agrees with torch all but exactly.
    code = quant_check.main([*images, "--prompt", "a cup", "--weights", str(tiny_checkpoint), "--input-size",
                             "64", "96", "--onnx", str(exported), "--json", str(report)])
    assert code == 0
    rows = json.loads(report.read_text())["per_image"]
    assert all(row["iou"] == 1.0 and row["max_abs_diff"] < 1e-5 for row in rows), rows


COMMANDS = ("clipseg-export", "clipseg-quant-check")


def start_early() -> Background:
    """Each installed command run with --help, started with the session (background.py)."""
    background = Background()
    for command in COMMANDS:
        executable = Path(sys.prefix) / "bin" / command
        if os.access(executable, os.X_OK):
            background.start(command, [str(executable), "--help"])
    return background


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_are_installed(early, command):
    assert command in early.processes, f"{Path(sys.prefix) / 'bin' / command} missing: run make setup"
    done = early.result(command)
    assert done.returncode == 0 and f"usage: {command}" in done.stdout, done.stderr
