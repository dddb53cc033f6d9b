"""What the bench scripts share: the random full-size weights, the prompts, timing and agreement with a reference.

The weights are transformers' CLIPSeg rd64-refined with a random init, saved with save_pretrained, so our
loader and transformers read the same numbers.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

PROMPTS = ["a cup", "the handle", "free floor", "a red mug", "a person", "a chair", "a laptop", "a bottle"]


def make_weights(directory: Path) -> None:
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    torch.manual_seed(0)
    config = CLIPSegConfig(vision_config=dict(patch_size=16), reduce_dim=64, use_complex_transposed_convolution=True)
    model = CLIPSegForImageSegmentation(config)
    # HF's random init gives logits of +-3000 where sigmoid is flat; scale the last layer so the
    # logits spread like real weights' (about +-10) and precision comparisons mean something.
    with torch.no_grad():
        model.decoder.transposed_convolution[-1].weight.mul_(2e-3)
        model.decoder.transposed_convolution[-1].bias.mul_(2e-3)
    model.save_pretrained(directory)


def load_average() -> str:
    """The 1/5/15-minute load averages: a figure taken while other work loads the machine says so beside it."""
    return "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn) for _ in range(runs))


def cuda_time(fn: Callable[[], object], runs: int, warmup: int = 5) -> float:
    """median_time of `fn` up to the end of its GPU work (CUDA runs asynchronously)."""

    def run() -> None:
        fn()
        torch.cuda.synchronize()

    return median_time(run, runs, warmup)


def agreement(reference: np.ndarray, other: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Largest probability difference and the IoU of the masks at `threshold` (1.0 where both are empty)."""
    a, b = reference >= threshold, other >= threshold
    union = np.logical_or(a, b).sum()
    return {"max_abs_diff": float(np.abs(reference - other).max()),
            "iou": float(np.logical_and(a, b).sum() / union) if union else 1.0}


# Worker threads keep spinning on a core after a call returns (measured after a 4-prompt frame: ONNX Runtime's
# about 40 ms of CPU, torch's OpenMP about 10 ms). Back to back, that spinning would land on the next call of the
# round, another runtime's, and slow it by up to a fifth on 2 cores: each call starts on a settled machine.
SETTLE_S = 0.2


def alternating_times(calls: dict, runs: int) -> dict[str, list[float]]:
    """Each call once to warm up, then `runs` rounds of every call in turn, each after SETTLE_S of quiet; each
    call's seconds, round by round."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            time.sleep(SETTLE_S)
            times[name].append(timed(call))
    return times


def alternating_medians(calls: dict, runs: int) -> dict[str, float]:
    """The median of each call's alternating_times."""
    return {name: statistics.median(t) for name, t in alternating_times(calls, runs).items()}
