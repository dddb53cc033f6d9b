"""The export cache checks what it hands out: a truncated or corrupt cached file is rebuilt, an ONNX file that
cannot be loaded is refused with the reason, and clipseg-quant-check says so in one line.

Real exports (torch.onnx) and real ONNX Runtime sessions of a tiny random model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tiny_clipseg import copy_session_export

from clipseg_ros import Segmenter
from clipseg_ros.commands import quant_check
from clipseg_ros.engine.backends.export_cache import code_key, intact
from clipseg_ros.engine.backends.onnx_export import ExportError
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig

SIZE = (64, 96)


@pytest.fixture(scope="module")
def cache(_runtime_cache_directory, tmp_path_factory):
    """The module's own export cache (its tests damage what it holds), starting with the session's export of
    tiny() at SIZE (tiny_clipseg.copy_session_export)."""
    own = tmp_path_factory.mktemp("runtime_cache")
    copy_session_export(_runtime_cache_directory, own, SIZE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLIPSEG_ROS_CACHE", str(own))
        yield own


def tiny() -> ClipSeg:
    torch.manual_seed(0)
    return ClipSeg(ClipSegConfig.tiny()).eval()


def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)


def onnxruntime_segmenter(**options) -> Segmenter:
    return Segmenter(tiny(), device="cpu", input_size=SIZE, backend="onnxruntime", **options)


def cached(cache: Path, suffix: str) -> Path:
    (path,) = cache.rglob(f"*{suffix}")
    return path


def test_a_truncated_cached_export_is_rebuilt(cache, caplog):
    expected = onnxruntime_segmenter().segment(image(), ["a cup"]).probabilities
    path = cached(cache, f"_code{code_key()}.onnx")  # keyed by the code that wrote it, too
    whole = path.stat().st_size
    with open(path, "r+b") as file:
        file.truncate(whole // 2)
    assert not intact(path)
    with caplog.at_level(logging.WARNING):
        rebuilt = onnxruntime_segmenter()
    assert "incomplete or corrupt" in caplog.text and path.name in caplog.text
    assert path.stat().st_size == whole and intact(path)
    np.testing.assert_allclose(rebuilt.segment(image(), ["a cup"]).probabilities, expected, atol=1e-6)


def test_a_corrupt_int8_file_is_rebuilt_from_the_intact_fp32_one(cache):
    onnxruntime_segmenter(int8="dynamic")
    fp32, int8 = cached(cache, f"_code{code_key()}.onnx"), cached(cache, "_int8-dynamic.onnx")
    fp32_stamp = fp32.stat().st_mtime_ns
    data = bytearray(int8.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped inside the weights
    int8.write_bytes(bytes(data))
    assert not intact(int8)
    result = onnxruntime_segmenter(int8="dynamic").segment(image(), ["a cup"])
    assert intact(int8) and fp32.stat().st_mtime_ns == fp32_stamp
    assert ((result.probabilities >= 0) & (result.probabilities <= 1)).all()


def damaged_copies(cache: Path, directory: Path) -> dict[str, Path]:
    source = cached(cache, f"_code{code_key()}.onnx").read_bytes()
    files = {"truncated": source[: len(source) // 3], "garbage": b"not an onnx graph\n" * 50}
    for name, data in files.items():
        (directory / f"{name}.onnx").write_bytes(data)
    return {name: directory / f"{name}.onnx" for name in files}


def test_an_unloadable_onnx_file_is_refused_with_the_reason(cache, tmp_path):
    onnxruntime_segmenter()
    for path in damaged_copies(cache, tmp_path).values():
        with pytest.raises(ExportError, match=f"cannot load the ONNX file {path} .*export it again") as error:
            onnxruntime_segmenter(onnx_file=str(path))
        assert "\n" not in str(error.value)


def test_quant_check_on_a_bad_file_is_one_line_and_exit_2(cache, tiny_checkpoint, tmp_path, caplog, capsys):
    onnxruntime_segmenter()
    cv2.imwrite(str(tmp_path / "image.png"), image())
    for path in damaged_copies(cache, tmp_path).values():
        caplog.clear()
        code = quant_check.main([str(tmp_path / "image.png"), "--prompt", "a cup", "--weights", str(tiny_checkpoint),
                                 "--input-size", "64", "96", "--onnx", str(path), "--json", str(tmp_path / "r.json")])
        assert code == 2
        (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert error.startswith(f"cannot load the ONNX file {path}") and "\n" not in error
    assert not capsys.readouterr().out and not (tmp_path / "r.json").exists()
