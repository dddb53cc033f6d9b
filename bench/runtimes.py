"""The Segmenter's CPU runtimes side by side: torch fp32, torch bf16 (precision auto's choice where it pays),
ONNX Runtime fp32 and ONNX Runtime int8 (dynamic).

Same random full-size rd64-refined weights for all (made as bench/engine_vs_transformers.py makes them, or --weights),
352x352, text prompts cached, at 1, 4 and 8 prompts. The runtimes run in turn, frame after frame, each after a pause of
common.SETTLE_S (so that one runtime's threads, still spinning, do not slow the next one's frame), and each one's median
is taken, so a neighbour's load hits all alike; ratios are against torch fp32, and the load average is printed beside
each figure (a loaded machine slows torch's threads more than ONNX Runtime's). Each runtime also starts once in a fresh
process: its first call (Segmenter creation, i.e. the ONNX Runtime session or the bf16 copy of the weights, plus the
first frame; weights loading excluded) and its peak RSS; and the one-time setup in the parent (export and quantisation
into an empty cache). With CUDA: torch fp16, torch fp16 under torch.compile and TensorRT fp16, in frames/s; without it,
"GPU: skipped".

    .venv/bin/python bench/runtimes.py [--runs 5] [--threads N] [--weights DIR] [--json out/bench/runtimes.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import PROMPTS, SETTLE_S, agreement, alternating_times, cuda_time, load_average, make_weights

from clipseg_ros import Segmenter
from clipseg_ros.engine.checkpoints import load_hf

SIZE = 352
COUNTS = (1, 4, 8)
BASELINE = "torch fp32"
BACKENDS = {  # name -> Segmenter keywords
    BASELINE: {"precision": "fp32"},
    "torch bf16": {"precision": "bf16"},
    "onnxruntime fp32": {"backend": "onnxruntime"},
    "onnxruntime int8": {"backend": "onnxruntime", "int8": "dynamic"},
}
# Largest ratio to torch fp32's time (issue 21, set at 4 prompts, held at each count), and the smallest mask IoU
# against torch fp32 at 4 prompts.
TARGETS = {**{("onnxruntime fp32", n): 0.8 for n in COUNTS}, **{("onnxruntime int8", n): 0.4 for n in COUNTS}}
IOU_TARGETS = {"onnxruntime int8": 0.98}
TENSORRT_TARGET_FPS = 500


def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def child(name: str, directory: Path) -> None:
    """First call and peak RSS of one backend in a fresh process (exports already in the cache)."""
    model = load_hf(str(directory))
    start = time.perf_counter()
    Segmenter(model, device="cpu", input_size=SIZE, **BACKENDS[name]).segment(image(), PROMPTS[:1])
    first = time.perf_counter() - start
    # VmHWM, not getrusage: ru_maxrss survives exec, so a child would report its parent's peak.
    status = Path("/proc/self/status").read_text().splitlines()
    peak = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"first_call_s": first, "peak_rss_mib": peak}))


def fresh_process(name: str, directory: Path) -> dict:
    command = [sys.executable, __file__, "--child", name, "--weights", str(directory)]
    load = load_average()
    out = subprocess.run([*command, "--threads", str(torch.get_num_threads())],
                         capture_output=True, text=True, check=True, env=dict(os.environ))
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load": load}


def gpu_section(directory: Path, runs: int) -> dict:
    """Frames per second on CUDA at 1 and 8 prompts: torch fp16, torch fp16 compiled, TensorRT fp16."""
    if not torch.cuda.is_available():
        print("GPU: skipped (no CUDA device on this machine)")
        return {"skipped": "no CUDA device"}
    frame = image()
    segmenters = {
        "torch fp16": Segmenter(load_hf(str(directory)), device="cuda", precision="fp16", input_size=SIZE),
        "torch fp16 compiled": Segmenter(load_hf(str(directory)), device="cuda", precision="fp16", input_size=SIZE),
    }
    # The Segmenter calls its image path; reduce-overhead captures the model's forward in CUDA graphs.
    segmenters["torch fp16 compiled"].image_path.model = torch.compile(segmenters["torch fp16 compiled"].model,
                                                                      mode="reduce-overhead")
    if importlib.util.find_spec("tensorrt") is None:
        print("GPU TensorRT: skipped (tensorrt not installed: pip install tensorrt)")
    else:
        start = time.perf_counter()
        segmenters["tensorrt fp16"] = Segmenter(load_hf(str(directory)), device="cuda", input_size=SIZE,
                                                backend="tensorrt")
        print(f"GPU TensorRT engine build (first start, then cached): {time.perf_counter() - start:.0f} s")
    results = {}
    for name, segmenter in segmenters.items():
        for n in (1, 8):
            seconds = cuda_time(lambda segmenter=segmenter, n=n: segmenter.segment(frame, PROMPTS[:n]), runs * 4)
            results[f"{name} {n}"] = {"seconds": seconds, "fps": 1 / seconds}
            print(f"GPU {name:22} {n} prompt(s) {seconds * 1e3:8.2f} ms {1 / seconds:8.1f} frames/s")
    if "tensorrt fp16 1" in results:
        fps = results["tensorrt fp16 1"]["fps"]
        print(f"GPU target: TensorRT fp16 >= {TENSORRT_TARGET_FPS} frames/s at 1 prompt: {fps:.0f} "
              f"({'met' if fps >= TENSORRT_TARGET_FPS else 'MISSED'})")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default="out/bench/runtimes.json")
    parser.add_argument("--child", choices=tuple(BACKENDS))
    parser.add_argument("--weights", help="a directory of full-size weights (default: random ones, made here)")
    parser.add_argument("--threads", type=int, help="torch's and ONNX Runtime's threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # the onnxruntime backend takes torch's thread count
    if args.child:
        child(args.child, Path(args.weights))
        return

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(args.weights) if args.weights else Path(tmp) / "weights"
        if not args.weights:
            make_weights(directory)
        # A cache of this run's own: the exports below are timed from nothing, and nothing is left behind.
        os.environ["CLIPSEG_ROS_CACHE"] = str(Path(tmp) / "cache")
        model = load_hf(str(directory))
        segmenters, setup = {}, {}
        for name, options in BACKENDS.items():
            # torch bf16 converts the model it is given: each runtime gets its own copy of the weights.
            weights = load_hf(str(directory)) if options.get("precision") == "bf16" else model
            start = time.perf_counter()
            segmenters[name] = Segmenter(weights, device="cpu", input_size=SIZE, **options)
            setup[name] = {"seconds": time.perf_counter() - start, "load": load_average()}
        frame = image()
        rows = {}
        for n in COUNTS:
            times = alternating_times(
                {name: lambda s=s, n=n: s.segment(frame, PROMPTS[:n]) for name, s in segmenters.items()}, args.runs)
            load = load_average()
            baseline = statistics.median(times[BASELINE])
            # A runtime's frame against torch fp32's of the same round, seconds apart: the spread of these says
            # how much the machine changed under the run, which the medians alone hide.
            per_round = {name: [a / b for a, b in zip(t, times[BASELINE], strict=True)] for name, t in times.items()}
            rows[n] = {name: {"seconds": statistics.median(t), "ratio": statistics.median(t) / baseline,
                              "round_ratios": (min(per_round[name]), max(per_round[name])),
                              "target": TARGETS.get((name, n)), "load": load}
                       for name, t in times.items()}
        reference = segmenters[BASELINE].segment(frame, PROMPTS[:4]).probabilities
        agree = {name: agreement(reference, s.segment(frame, PROMPTS[:4]).probabilities)
                 for name, s in segmenters.items() if name != BASELINE}
        del segmenters, model
        fresh = {name: fresh_process(name, directory) for name in BACKENDS}
        gpu = gpu_section(directory, args.runs)

    print(f"\nCLIPSeg rd64-refined, {SIZE}x{SIZE}, CPU ({torch.get_num_threads()} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}), median of {args.runs} alternating runs "
          f"(each frame after {SETTLE_S} s of quiet), text prompts cached")
    print(f"{'runtime':18} {'prompts':>7} {'ms':>9} {'/ fp32':>7} {'rounds':>11} {'target':>7} {'':7} "
          f"load 1/5/15 min")
    for n, by_backend in rows.items():
        for name, r in by_backend.items():
            target = f"<={r['target']}" if r["target"] else ""
            ok = "" if r["target"] is None else ("met" if r["ratio"] <= r["target"] else "MISSED")
            low, high = r["round_ratios"]
            print(f"{name:18} {n:7d} {r['seconds'] * 1e3:9.1f} {r['ratio']:7.3f} {low:5.3f}-{high:5.3f} "
                  f"{target:>7} {ok:7} {r['load']}")
    print("(rounds: the lowest and highest ratio of a round, the runtime's frame against torch fp32's of the same "
          "round)")
    print(f"\n{'runtime':18} {'first call s':>12} {'peak RSS MiB':>13}  load 1/5/15 min   "
          f"{'one-time setup s':>16}  load 1/5/15 min")
    for name, f in fresh.items():
        print(f"{name:18} {f['first_call_s']:12.2f} {f['peak_rss_mib']:13.0f}  {f['load']}   "
              f"{setup[name]['seconds']:16.1f}  {setup[name]['load']}")
    print("(one-time setup: Segmenter creation with an empty cache: the ONNX export, its check against torch and "
          "the int8 quantisation; for torch bf16 the bf16 copy of the weights, whose packing for oneDNN is part of "
          "its first call)")
    for name, a in agree.items():
        target = IOU_TARGETS.get(name)
        ok = "" if target is None else f" (target >= {target}: {'met' if a['iou'] >= target else 'MISSED'})"
        print(f"{name} vs {BASELINE}, 4 prompts, random weights: max |dp| {a['max_abs_diff']:.2e}, "
              f"mask IoU {a['iou']:.3f}{ok}")
    report = {"cases": {str(n): r for n, r in rows.items()}, "fresh_process": fresh, "setup": setup,
              "agreement": agree, "gpu": gpu, "threads": torch.get_num_threads(), "runs": args.runs,
              "torch": torch.__version__}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
