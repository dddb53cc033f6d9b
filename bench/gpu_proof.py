"""One command for the day a GPU is lent: what this project says about NVIDIA GPUs, run and printed in one table.

    .venv/bin/python bench/gpu_proof.py [--budget-s 480] [--json out/bench/gpu_proof.json]

In order, each step within what is left of the budget (8 minutes; a step that would not fit is reported as
skipped, never dropped silently):
1. the GPU tests: the test functions that need CUDA or TensorRT (selected by name), in a pytest process;
2. parity with torch fp32 on the GPU (random full-size rd64-refined weights, 4 prompts): torch fp16 and bf16,
   what `precision auto` picks, and TensorRT (fp16 export -> engine build -> the same frame);
3. the benchmark, each runtime in a fresh process: its start (weights to the GPU, backend built or loaded) and
   first frame, frames/s at 1, 4 and 8 prompts with 1 and 4 images per call, and the GPU memory it holds.
Exit 1 if a test fails, a parity check misses its tolerance or a runtime crashes; a runtime that cannot run
here (no TensorRT, no onnxruntime-gpu) is shown with the reason. Without a CUDA device it says so in one line
and exits 0. `--rehearse` runs the same steps on the CPU with a tiny model, to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import PROMPTS, agreement, cuda_time, make_weights, median_time

from clipseg_ros import Segmenter
from clipseg_ros.engine.backends import BackendUnavailable
from clipseg_ros.engine.checkpoints import load_hf, save_hf
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 480.0
SIZE = 352
COUNTS = (1, 4, 8)  # prompts per frame
BATCHES = (1, 4)  # images per call (TensorRT engines take up to limits.TENSORRT_MAX_IMAGES)
RUNTIMES = {  # name -> Segmenter keywords
    "torch fp32": {"precision": "fp32"},
    "torch fp16": {"precision": "fp16"},
    "torch bf16": {"precision": "bf16"},
    "onnxruntime fp32": {"backend": "onnxruntime"},
    "tensorrt fp16": {"backend": "tensorrt"},
}
# Against torch fp32 on the same frame: (largest probability difference, smallest mask IoU).
PARITY = {"torch fp16": {"precision": "fp16"}, "torch bf16": {"precision": "bf16"},
          "torch auto": {"precision": "auto"}, "tensorrt fp16": {"backend": "tensorrt"}}
TOLERANCE = {"fp16": (0.02, 0.98), "bf16": (0.05, 0.97)}
GPU_TESTS = ("test/unit/test_segmenter.py", "test/unit/test_backends.py", "test/unit/test_precision.py")
GPU_TEST_NAMES = "cuda or tensorrt or gpu"
# What a step needs of the budget to be started: a parity row (an fp16 export and an engine build for TensorRT);
# a runtime's fresh process (imports, weights, start, first frame, 6 timed cases). A process gets at most CHILD_S.
PARITY_NEEDS_S = {"tensorrt fp16": 240.0}
PARITY_ROW_S = 30.0
CHILD_NEEDS_S = 60.0
CHILD_S = 180.0


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def frame_time(fn, device: str, runs: int) -> float:
    return cuda_time(fn, runs) if device == "cuda" else median_time(fn, runs)


def memory_mib(device: str, baseline_free: int) -> float:
    """The GPU memory taken since `baseline_free` (bytes free then), device-wide; on the CPU, peak RSS."""
    if device == "cuda":
        return (baseline_free - torch.cuda.mem_get_info()[0]) / 2**20
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))


# -- 1. tests -------------------------------------------------------------------------------------------


def run_tests(budget: Budget) -> dict:
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *GPU_TESTS,
               "-k", GPU_TEST_NAMES]
    start = time.monotonic()
    try:
        # What the tests leave is for a TensorRT build and the runtimes' processes.
        timeout = max(budget.left() - PARITY_NEEDS_S["tensorrt fp16"] - 2 * CHILD_NEEDS_S, 90)
        run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "summary": "timed out", "seconds": time.monotonic() - start}
    lines = run.stdout.strip().splitlines()
    return {"ok": run.returncode == 0, "summary": lines[-1] if lines else run.stderr.strip()[-300:],
            "skipped": [line for line in lines if line.startswith("SKIPPED")], "seconds": time.monotonic() - start}


# -- 2. parity --------------------------------------------------------------------------------------------


def parity(directory: Path, device: str, budget: Budget) -> dict[str, dict]:
    frame, prompts = image(), PROMPTS[:4]
    reference = Segmenter(load_hf(str(directory)), device=device, input_size=SIZE)
    expected = reference.segment(frame, prompts).probabilities
    del reference
    rows = {}
    for name, options in PARITY.items():
        if budget.left() < PARITY_NEEDS_S.get(name, PARITY_ROW_S) + CHILD_NEEDS_S:
            rows[name] = {"skipped": "over the time budget"}
            continue
        start = time.monotonic()
        try:
            segmenter = Segmenter(load_hf(str(directory)), device=device, input_size=SIZE, **options)
        except (BackendUnavailable, ValueError) as exc:
            rows[name] = {"unavailable": " ".join(str(exc).split())}
            continue
        setup = time.monotonic() - start
        row = {"precision": segmenter.precision, "setup_s": setup,
               **agreement(expected, segmenter.segment(frame, prompts).probabilities)}
        most, least = TOLERANCE.get("fp16" if name.startswith("tensorrt") else segmenter.precision, (1e-4, 0.999))
        row["ok"] = row["max_abs_diff"] <= most and row["iou"] >= least
        rows[name] = row
        del segmenter
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


# -- 3. benchmark, one fresh process per runtime --------------------------------------------------------


def child(name: str, directory: Path, device: str, runs: int) -> dict:
    baseline = 0
    if device == "cuda":
        torch.zeros(1, device=device)  # the CUDA context, not counted as the runtime's memory
        torch.cuda.synchronize()
        baseline = torch.cuda.mem_get_info()[0]
    model, frame = load_hf(str(directory)), image()
    start = time.perf_counter()
    try:
        segmenter = Segmenter(model, device=device, input_size=SIZE, **RUNTIMES[name])
    except (BackendUnavailable, ValueError) as exc:
        return {"unavailable": " ".join(str(exc).split())}
    started = time.perf_counter() - start
    begin = time.perf_counter()
    segmenter.segment(frame, PROMPTS[:1])
    if device == "cuda":
        torch.cuda.synchronize()
    first = time.perf_counter() - begin
    fps = {}
    for images in BATCHES:
        for n in COUNTS:
            seconds = frame_time(lambda i=images, n=n: segmenter.segment_batch([frame] * i, PROMPTS[:n]), device, runs)
            fps[f"{n}x{images}"] = images / seconds
    return {"start_s": started, "first_frame_s": first, "fps": fps, "memory_mib": memory_mib(device, baseline)}


def benchmark(directory: Path, device: str, runs: int, budget: Budget) -> dict[str, dict]:
    rows = {}
    for name in RUNTIMES:
        if budget.left() < CHILD_NEEDS_S:
            rows[name] = {"skipped": "over the time budget"}
            continue
        command = [sys.executable, __file__, "--child", name, "--weights", str(directory), "--device", device,
                   "--runs", str(runs)]
        timeout = min(budget.left(), CHILD_S)
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            rows[name] = {"failed": f"no result within {timeout:.0f} s"}
            continue
        lines = run.stdout.strip().splitlines()
        if run.returncode != 0 or not lines:
            rows[name] = {"failed": (run.stderr.strip().splitlines() or ["no output"])[-1]}
            continue
        rows[name] = json.loads(lines[-1])
    return rows


# -- the table ----------------------------------------------------------------------------------------------


def describe(device: str) -> str:
    if device != "cuda":
        return f"CPU rehearsal ({torch.get_num_threads()} threads, tiny model)"
    versions = [f"torch {torch.__version__}", f"CUDA {torch.version.cuda}"]
    try:
        import tensorrt

        versions.append(f"TensorRT {tensorrt.__version__}")
    except ImportError:
        versions.append("no TensorRT")
    return f"{torch.cuda.get_device_name()} ({', '.join(versions)}), random full-size rd64-refined weights"


def print_report(report: dict, device: str) -> None:
    print(f"\nGPU proof on {describe(device)}, {SIZE}x{SIZE}")
    tests = report["tests"]
    print(f"\nGPU tests ({GPU_TEST_NAMES}): {tests['summary']} ({tests['seconds']:.0f} s)")
    for line in tests.get("skipped", []):
        print(f"  {line}")
    print(f"\n{'parity with torch fp32, 4 prompts':34} {'precision':>9} {'max |dp|':>9} {'mask IoU':>9} "
          f"{'setup s':>8}")
    for name, row in report["parity"].items():
        if "iou" not in row:
            print(f"{name:34} {_instead(row)}")
            continue
        print(f"{name:34} {row['precision']:>9} {row['max_abs_diff']:9.4f} {row['iou']:9.4f} {row['setup_s']:8.1f}"
              f"  {'ok' if row['ok'] else 'OUT OF TOLERANCE'}")
    cases = [f"{n}x{images}" for images in BATCHES for n in COUNTS]
    memory = "GPU MiB" if device == "cuda" else "RSS MiB"
    print("\nframes/s by prompts x images per call; start: weights to the device and the backend built or loaded")
    print(f"{'runtime':18} {'start s':>8} {'first ms':>9} " + " ".join(f"{c:>8}" for c in cases) + f" {memory:>8}")
    for name, row in report["benchmark"].items():
        if "fps" not in row:
            print(f"{name:18} {_instead(row)}")
            continue
        print(f"{name:18} {row['start_s']:8.2f} {row['first_frame_s'] * 1e3:9.1f} "
              + " ".join(f"{row['fps'][c]:8.1f}" for c in cases) + f" {row['memory_mib']:8.0f}")


def _instead(row: dict) -> str:
    """What a row holds instead of figures: unavailable, skipped or failed, and why."""
    (what, why), = row.items()
    return f"{what}: {why}"


def failures(report: dict) -> list[str]:
    failed = [] if report["tests"]["ok"] else [f"GPU tests: {report['tests']['summary']}"]
    failed += [f"parity {name}" for name, row in report["parity"].items() if row.get("ok") is False]
    failed += [f"{name}: {row['failed']}" for name, row in report["benchmark"].items() if "failed" in row]
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="the whole run's time")
    parser.add_argument("--runs", type=int, default=20, help="timed calls per case (median)")
    parser.add_argument("--json", default="out/bench/gpu_proof.json")
    parser.add_argument("--rehearse", action="store_true", help="the same steps on the CPU with a tiny model")
    parser.add_argument("--child", choices=tuple(RUNTIMES))
    parser.add_argument("--weights")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.weights), args.device, args.runs)))
        return 0
    if not args.rehearse and not torch.cuda.is_available():
        print("gpu_proof: no GPU here (torch sees no CUDA device), nothing to prove on this machine")
        return 0
    device = "cpu" if args.rehearse else "cuda"
    budget = Budget(args.budget_s)
    with tempfile.TemporaryDirectory() as tmp:
        # Exports and TensorRT engines of this run's own: built from nothing, nothing left behind.
        os.environ["CLIPSEG_ROS_CACHE"] = str(Path(tmp) / "cache")
        report = {"tests": run_tests(budget)}
        directory = Path(tmp) / "weights"
        if args.rehearse:
            torch.manual_seed(0)
            save_hf(ClipSeg(ClipSegConfig.tiny()).eval(), directory)
        else:
            make_weights(directory)
        report["parity"] = parity(directory, device, budget)
        report["benchmark"] = benchmark(directory, device, args.runs, budget)
    print_report(report, device)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    failed = failures(report)
    print(f"\nwrote {args.json}; {len(failed)} failure(s){': ' + '; '.join(failed) if failed else ''}, "
          f"{args.budget_s - budget.left():.0f} s of the {args.budget_s:.0f} s budget")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
