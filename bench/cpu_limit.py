"""The whole CPU frame beside its matrix-product limit (issue 21): how far the engine is from the GEMM peak.

The frame is Segmenter.segment on a camera-size image at 4 prompts (text prompts cached), pre-processing to
masks, in bf16 by default (the path precision auto takes where bf16 is the faster). Its FLOPs are counted with
torch.utils.flop_counter.FlopCounterMode, plus the two matrix products its counter has no formula for: the CPU's
flash attention (QK^T and PV) and oneDNN's fused linear layers (the decoder's). The peak is the best throughput of
large square matmuls in the same dtype on the same thread count; the limit is FLOPs / peak. The frame, its stages
(pre-processing, backbone, decoder, post-processing) and the matmuls run in turn, round after round, so a
neighbour's load hits all alike; the load average is printed beside the figures. --profile adds torch.profiler's
table of the frame: what besides the matrix products takes its time.

    .venv/bin/python bench/cpu_limit.py [--runs 7] [--threads N] [--prompts 4] [--camera 640x480]
        [--precision bf16|fp32] [--weights DIR] [--profile] [--json out/bench/cpu_limit.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import PROMPTS, alternating_medians, load_average, make_weights
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from clipseg_ros import Segmenter
from clipseg_ros.engine.checkpoints import load_hf
from clipseg_ros.engine.preprocess import logits_to_probabilities, to_model_input

SIZE = 352
TARGET_RATIO = 2.5  # issue 21: the bf16 frame within 2.5x of its matrix-product limit
GEMM_SIDES = (2048, 3072, 4096)
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _linear_flops(x_shape, *args, out_shape=None, **kwargs) -> int:
    # From the input's and output's shapes: the op's other overload (a fused addition) puts another tensor
    # second, and a packed weight's shape is oneDNN's.
    rows = int(np.prod(x_shape[:-1]))
    return 2 * rows * x_shape[-1] * out_shape[-1]


def _attention_flops(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(q_shape, k_shape, v_shape)


UNCOUNTED = {  # matrix products FlopCounterMode has no formula for (it looks operators up by name)
    torch.ops.mkldnn._linear_pointwise: _linear_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops,
}


def count_flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False, custom_mapping=UNCOUNTED)
    with counter:
        fn()
    return counter.get_total_flops()


def stages(segmenter: Segmenter, frame: np.ndarray, prompts: list[str]) -> dict[str, Callable[[], object]]:
    """The frame as Segmenter.segment runs it, whole and stage by stage (each stage on its own input)."""
    model, size = segmenter.model, segmenter.input_size
    with torch.inference_mode():
        conditionals, _ = segmenter.conditionals(prompts)
        pixels = to_model_input([frame], size, segmenter.device, segmenter.dtype)
        index = torch.zeros(len(prompts), dtype=torch.long)
        activations, grid = model.backbone.dense_activations(pixels, model.config.extract_layers)
        logits = model.decoder(activations, conditionals, grid, index)
    calls = {
        "pre-processing": lambda: to_model_input([frame], size, segmenter.device, segmenter.dtype),
        "backbone": lambda: model.backbone.dense_activations(pixels, model.config.extract_layers),
        "decoder": lambda: model.decoder(activations, conditionals, grid, index),
        "post-processing": lambda: logits_to_probabilities(logits, frame.shape[:2]) >= 0.5,
        "whole frame": lambda: segmenter.segment(frame, prompts).masks,
    }

    def in_inference(call: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return call()

        return run

    return {name: in_inference(call) for name, call in calls.items()}


def gemms(dtype: torch.dtype) -> dict[str, tuple[Callable[[], object], int]]:
    generator = torch.Generator().manual_seed(0)
    calls = {}
    for n in GEMM_SIDES:
        a, b = (torch.randn(n, n, generator=generator).to(dtype) for _ in range(2))
        calls[f"matmul {n}^3"] = (lambda a=a, b=b: a @ b, 2 * n**3)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, help="torch's threads (default: torch's own)")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--camera", default="640x480", help="camera frame, WIDTHxHEIGHT")
    parser.add_argument("--precision", choices=tuple(DTYPES), default="bf16")
    parser.add_argument("--weights", help="a directory of full-size weights (default: random ones, made here)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's table of the frame")
    parser.add_argument("--json", default="out/bench/cpu_limit.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(side) for side in args.camera.lower().split("x"))
    prompts = PROMPTS[: args.prompts]
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(args.weights) if args.weights else Path(tmp) / "weights"
        if not args.weights:
            make_weights(directory)
        segmenter = Segmenter(load_hf(str(directory)), device="cpu", precision=args.precision, input_size=SIZE)
    calls = stages(segmenter, frame, prompts)
    flops = {name: count_flops(call) for name, call in calls.items()}
    matmuls = gemms(DTYPES[args.precision])
    load_before = load_average()
    seconds = alternating_medians({**calls, **{name: call for name, (call, _) in matmuls.items()}}, args.runs)
    load_after = load_average()
    throughput = {name: work / seconds[name] for name, (_, work) in matmuls.items()}
    peak_name = max(throughput, key=throughput.get)
    peak = throughput[peak_name]

    threads, isa = torch.get_num_threads(), torch.backends.cpu.get_cpu_capability()
    print(f"\nCLIPSeg rd64-refined, {args.precision}, CPU ({threads} threads, {isa}), {width}x{height} camera frame "
          f"-> {SIZE}x{SIZE}, {len(prompts)} prompts (text cached), random weights")
    print(f"median of {args.runs} alternating rounds; {load_before} before, {load_after} after")
    print(f"peak {args.precision} GEMM: {peak / 1e12:.2f} TFLOP/s ({peak_name}; "
          + ", ".join(f"{name.split()[1]} {t / 1e12:.2f}" for name, t in throughput.items()) + ")")
    print(f"\n{'stage':16} {'GFLOP':>7} {'limit ms':>9} {'ms':>8} {'x limit':>8}")
    rows = {}
    for name in calls:
        limit = flops[name] / peak
        ratio = seconds[name] / limit if flops[name] else None
        rows[name] = {"flops": flops[name], "limit_s": limit, "seconds": seconds[name], "ratio": ratio}
        shown = f"{ratio:8.2f}" if ratio else f"{'-':>8}"
        print(f"{name:16} {flops[name] / 1e9:7.2f} {limit * 1e3:9.2f} {seconds[name] * 1e3:8.1f} {shown}")
    whole = rows["whole frame"]["ratio"]
    verdict = "met" if whole <= TARGET_RATIO else "MISSED"
    print(f"\nwhole frame: {whole:.2f}x its {args.precision} matrix-product limit (target <= {TARGET_RATIO}x: "
          f"{verdict}; {load_after})")
    if args.profile:
        profile_frame(calls["whole frame"])
    report = {"precision": args.precision, "threads": threads, "camera": [width, height], "prompts": len(prompts),
              "runs": args.runs, "peak_flops_per_s": peak, "gemm_flops_per_s": throughput, "stages": rows,
              "load_before": load_before, "load_after": load_after, "torch": torch.__version__}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


def profile_frame(frame: Callable[[], object]) -> None:
    from torch.profiler import ProfilerActivity, profile

    frame()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as trace:
        for _ in range(3):
            frame()
    print("\ntorch.profiler, 3 frames (self CPU time, by operator and input shapes):")
    print(trace.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=20,
                                                                max_name_column_width=40,
                                                                max_shapes_column_width=60))


if __name__ == "__main__":
    main()
