"""The Segmenter's backends: onnxruntime gives torch's results through the same API, caching and batching;
int8 runs; tensorrt runs where TensorRT and a GPU are, and elsewhere says why it cannot."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from clipseg_ros import Segmenter, VisualPrompt
from clipseg_ros.engine.backends import BackendUnavailable
from clipseg_ros.engine.backends.base import import_optional
from clipseg_ros.engine.backends.export_cache import cached_export
from clipseg_ros.engine.backends.onnx_export import ExportError, read_info
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig

SIZE = (64, 96)


def tiny(seed: int = 0) -> ClipSeg:
    torch.manual_seed(seed)
    return ClipSeg(ClipSegConfig.tiny()).eval()


def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (50, 70, 3), dtype=np.uint8), rng.integers(0, 256, (90, 40, 3), dtype=np.uint8)]


def prompts() -> list:
    rng = np.random.default_rng(1)
    support = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    mask = np.zeros((40, 40), bool)
    mask[10:30, 5:25] = True
    return ["a cup", "the floor", VisualPrompt(support, mask, label="visual:mug"), "a cup"]


def test_onnxruntime_segmenter_gives_torch_results(runtime_cache):
    model = tiny()
    reference = Segmenter(model, device="cpu", input_size=SIZE)
    segmenter = Segmenter(model, device="cpu", input_size=SIZE, backend="onnxruntime")
    assert segmenter.image_path.name == "onnxruntime" and reference.image_path.name == "torch"
    for _ in range(2):  # the second round reads every prompt embedding from the cache
        expected = reference.segment_batch(images(), prompts(), threshold=0.4)
        results = segmenter.segment_batch(images(), prompts(), threshold=0.4)
        assert len(results) == 2
        for got, want in zip(results, expected, strict=True):
            assert got.labels == want.labels == ["a cup", "the floor", "visual:mug", "a cup"]
            assert got.probabilities.shape == want.probabilities.shape and got.probabilities.dtype == np.float32
            np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-5)
            assert got.threshold == 0.4
            np.testing.assert_array_equal(got.scores.round(4), want.scores.round(4))
    assert segmenter.cache_stats() == reference.cache_stats()
    assert segmenter.cache_stats()["hits"] > 0
    segmenter.warmup()


def test_export_is_cached_by_weights_and_size(runtime_cache):
    model = tiny()
    Segmenter(model, device="cpu", input_size=SIZE, backend="onnxruntime")
    files = sorted(runtime_cache.rglob("*.onnx"))
    stamps = [f.stat().st_mtime_ns for f in files]
    Segmenter(tiny(), device="cpu", input_size=SIZE, backend="onnxruntime")  # same weights: the same file
    assert sorted(runtime_cache.rglob("*.onnx")) == files and [f.stat().st_mtime_ns for f in files] == stamps
    assert all(read_info(f).input_size == SIZE for f in files)


def test_int8_dynamic_segmenter_runs(runtime_cache):
    segmenter = Segmenter(tiny(), device="cpu", input_size=SIZE, backend="onnxruntime", int8="dynamic")
    assert read_info(next(runtime_cache.rglob("*int8-dynamic.onnx"))).precision == "int8-dynamic"
    results = segmenter.segment_batch(images(), ["a cup", "the floor"])
    assert [r.probabilities.shape for r in results] == [(2, 50, 70), (2, 90, 40)]
    assert all(((r.probabilities >= 0) & (r.probabilities <= 1)).all() for r in results)


def flushing_denormals() -> bool:
    return torch.tensor(1e-39).mul(1.0).item() == 0.0


@pytest.mark.parametrize("caller_flushes", [False, True])
def test_onnxruntime_flushes_denormals_and_gives_the_caller_its_setting_back(runtime_cache, caller_flushes):
    """Denormals cost x86 up to 20x per operation (peaked softmax makes them): ONNX Runtime's threads flush
    them; the thread that creates and runs the session keeps its own setting for its torch and numpy work."""
    torch.set_flush_denormal(caller_flushes)
    try:
        segmenter = Segmenter(tiny(), device="cpu", input_size=SIZE, backend="onnxruntime")
        options = segmenter.image_path.session.get_session_options()
        assert options.get_session_config_entry("session.set_denormal_as_zero") == "1"
        assert flushing_denormals() is caller_flushes
        segmenter.segment(images()[0], ["a cup"])
        assert flushing_denormals() is caller_flushes
    finally:
        torch.set_flush_denormal(False)


def test_onnx_file_must_belong_to_the_model(runtime_cache, tmp_path):
    path, _ = cached_export(tiny(), SIZE, "fp32")  # the session's cached export of these weights, as a file
    segmenter = Segmenter(tiny(), device="cpu", input_size=SIZE, backend="onnxruntime", onnx_file=str(path))
    assert segmenter.segment(images()[0], ["a cup"]).probabilities.shape == (1, 50, 70)
    with pytest.raises(ExportError, match="exported from other weights"):
        Segmenter(tiny(seed=1), device="cpu", input_size=SIZE, backend="onnxruntime", onnx_file=str(path))
    with pytest.raises(ExportError, match="exported for input size 64x96, the Segmenter uses 64x64"):
        Segmenter(tiny(), device="cpu", input_size=64, backend="onnxruntime", onnx_file=str(path))
    with pytest.raises(FileNotFoundError, match="make it with clipseg-export"):
        Segmenter(tiny(), device="cpu", input_size=SIZE, backend="onnxruntime", onnx_file=str(tmp_path / "none.onnx"))


def test_backend_options_are_checked(runtime_cache):
    with pytest.raises(ValueError, match="backend 'openvino' is not one of torch, onnxruntime, tensorrt"):
        Segmenter(tiny(), device="cpu", input_size=SIZE, backend="openvino")
    with pytest.raises(ValueError, match="int8 runs on the onnxruntime backend only"):
        Segmenter(tiny(), device="cpu", input_size=SIZE, int8="dynamic")
    with pytest.raises(ValueError, match="int8 mode 'int4'"):
        Segmenter(tiny(), device="cpu", input_size=SIZE, backend="onnxruntime", int8="int4")
    with pytest.raises(ValueError, match="static int8 needs calibration images.*clipseg-export"):
        Segmenter(tiny(), device="cpu", input_size=SIZE, backend="onnxruntime", int8="static")


def test_a_missing_runtime_says_what_to_install():
    with pytest.raises(BackendUnavailable, match=r"'no_such_runtime'.*not installed here.*pip install no-such"):
        import_optional("no_such_runtime", "the test backend", "pip install no-such")


def test_fp16_export_for_tensorrt_is_checked_against_torch(runtime_cache):
    """The engine's source graph is built and verified on any machine (ONNX Runtime runs it on the CPU)."""
    path, digest = cached_export(tiny(), SIZE, "fp16")
    info = read_info(path)
    assert info.precision == "fp16" and info.input_size == SIZE and info.weights_digest == digest


HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


@pytest.mark.skipif(HAS_TENSORRT, reason="this machine can run TensorRT")
def test_tensorrt_without_a_gpu_says_why(runtime_cache):
    with pytest.raises(BackendUnavailable, match="tensorrt backend runs on an NVIDIA GPU: device is cpu"):
        Segmenter(tiny(), device="cpu", input_size=SIZE, backend="tensorrt")


@pytest.mark.skipif(not HAS_TENSORRT, reason="needs TensorRT (pip install tensorrt) and a CUDA GPU")
def test_tensorrt_fp16_engine_agrees_with_torch(runtime_cache):
    model = tiny()
    reference = Segmenter(model, device="cuda", input_size=SIZE)
    segmenter = Segmenter(tiny(), device="cuda", input_size=SIZE, backend="tensorrt")
    assert next(runtime_cache.rglob("*.engine")).is_file()
    for got, want in zip(segmenter.segment_batch(images(), prompts()), reference.segment_batch(images(), prompts()),
                         strict=True):
        assert got.labels == want.labels
        assert np.abs(got.probabilities - want.probabilities).max() < 0.02  # fp16 engine vs fp32 torch
    Segmenter(tiny(), device="cuda", input_size=SIZE, backend="tensorrt")  # loads the cached engine
    assert len(list(runtime_cache.rglob("*.engine"))) == 1
