"""precision auto: bf16 on a CPU whose bf16 matrix products are measured clearly faster than fp32's, fp32 on one
where they are not, fp32 prompt encoders under another backend, the choice logged with the measured figure; bf16
asked for where it is slower warns; and bf16's masks are fp32's on random weights."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from clipseg_ros import Segmenter
from clipseg_ros.engine import segmenter as segmenter_module
from clipseg_ros.engine.cpu_speed import BF16_MIN_SPEEDUP, bf16_speedup
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig
from clipseg_ros.engine.segmenter import resolve_precision

PROMPTS = ["a cup", "the floor", "a red mug", "a person"]
SIZE = (64, 96)


def tiny(seed: int = 0) -> ClipSeg:
    torch.manual_seed(seed)
    return ClipSeg(ClipSegConfig.tiny()).eval()


def images() -> list[np.ndarray]:
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    y, x = np.mgrid[0:120, 0:160]
    stripes = np.stack([(x % 64) * 4, (y % 48) * 5, ((x + y) % 100) * 2.5], axis=-1).astype(np.uint8)
    return [noise, stripes]


def auto_choice(caplog, **options) -> tuple[str, str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clipseg_ros.engine.segmenter"):
        segmenter = Segmenter(tiny(), device="cpu", precision="auto", input_size=SIZE, **options)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision auto")]
    return segmenter.precision, line


@pytest.mark.parametrize(("speedup", "chosen"), [(6.1, "bf16"), (2.0, "bf16"), (1.2, "fp32"), (0.6, "fp32")])
def test_auto_follows_the_measured_bf16_speed(caplog, monkeypatch, speedup, chosen):
    """6x: AMX; 2x: AMD's AVX512-BF16; 0.6x: Intel's AVX512-BF16 without AMX (cpu_speed's figures)."""
    monkeypatch.setattr(segmenter_module, "bf16_speedup", lambda: speedup)
    precision, line = auto_choice(caplog)
    assert precision == chosen
    why = f"bf16 matrix products run at {speedup:.1f}x fp32's speed on this CPU"
    assert line == f"precision auto: {chosen} on cpu ({why})"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_auto_on_this_cpu_takes_what_its_probe_measured(caplog):
    threads = torch.get_num_threads()
    bf16_speedup.cache_clear()
    speedup = bf16_speedup()
    assert 0.0 < speedup < 100.0 and bf16_speedup() == speedup  # measured once per process
    assert torch.get_num_threads() == threads  # the probe's one thread given back
    precision, line = auto_choice(caplog)
    assert precision == ("bf16" if speedup >= BF16_MIN_SPEEDUP else "fp32") and f"{speedup:.1f}x" in line


@pytest.mark.parametrize(("speedup", "warned"), [(0.6, True), (2.0, False)])
def test_bf16_asked_for_warns_where_it_is_slower(caplog, monkeypatch, speedup, warned):
    monkeypatch.setattr(segmenter_module, "bf16_speedup", lambda: speedup)
    with caplog.at_level(logging.WARNING, logger="clipseg_ros.engine.segmenter"):
        Segmenter(tiny(), device="cpu", precision="bf16", input_size=SIZE)
        Segmenter(tiny(), device="cpu", precision="fp32", input_size=SIZE)
    got = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert got == (["bf16 matrix products run at 0.6x fp32's speed on this CPU: fp32 is faster here"] if warned else [])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_on_a_gpu_is_fp16_with_tensor_cores_and_stays_close_to_fp32(caplog):
    with caplog.at_level(logging.INFO, logger="clipseg_ros.engine.segmenter"):
        segmenter = Segmenter(tiny(), device="cuda", precision="auto", input_size=SIZE)
    tensor_cores = torch.cuda.get_device_capability() >= segmenter_module.TENSOR_CORES
    assert segmenter.precision == ("fp16" if tensor_cores else "fp32") and "precision auto" in caplog.text
    reference = Segmenter(tiny(), device="cpu", input_size=SIZE)
    for image in images():
        got, want = segmenter.segment(image, PROMPTS), reference.segment(image, PROMPTS)
        spread = want.probabilities.max() - want.probabilities.min()
        assert np.abs(got.probabilities - want.probabilities).max() <= 0.02 * spread


def test_auto_under_onnxruntime_keeps_the_prompt_encoders_in_fp32(caplog):
    with caplog.at_level(logging.INFO, logger="clipseg_ros.engine.segmenter"):
        assert resolve_precision("auto", torch.device("cpu"), backend="onnxruntime") == "fp32"
    assert "the onnxruntime backend runs the image path in its file's precision" in caplog.text


def test_bf16_masks_are_those_of_fp32_on_random_weights():
    """Thresholds at each fp32 map's median put every mask's border across half the image, where a small
    change of the probabilities would move it most (the untrained maps are nearly flat)."""
    reference = Segmenter(tiny(), device="cpu", input_size=SIZE)
    bf16 = Segmenter(tiny(), device="cpu", precision="bf16", input_size=SIZE)
    for image in images():
        want, got = reference.segment(image, PROMPTS), bf16.segment(image, PROMPTS)
        assert got.probabilities.dtype == np.float32
        for k in range(len(PROMPTS)):
            threshold = np.median(want.probabilities[k])
            a, b = want.probabilities[k] >= threshold, got.probabilities[k] >= threshold
            assert (a & b).sum() / (a | b).sum() >= 0.97
            spread = want.probabilities[k].max() - want.probabilities[k].min()
            assert np.abs(got.probabilities[k] - want.probabilities[k]).max() <= 0.02 * spread


def test_precision_is_checked():
    with pytest.raises(ValueError, match="precision 'fastest' is not one of auto, fp32, fp16, bf16"):
        Segmenter(tiny(), device="cpu", precision="fastest", input_size=SIZE)
