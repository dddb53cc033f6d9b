"""Engine vs transformers' CLIPSegForImageSegmentation: same random full-size rd64-refined weights.

The HF model is built with random weights, saved with save_pretrained and loaded by our loader,
so both run the same numbers. Input 352x352. Times are medians after warm-up, in one process;
peak RSS is measured in one child process per side. Prints a table and writes JSON.

    .venv/bin/python bench/engine_vs_transformers.py [--runs 5] [--json out/bench/engine.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import PROMPTS, cuda_time, make_weights, timed

from clipseg_ros import Segmenter
from clipseg_ros.engine.checkpoints import load_hf
from clipseg_ros.engine.preprocess import normalize
from clipseg_ros.engine.prompts import Tokenizer

TARGETS = {"1 prompt, text cached": 0.85, "4 prompts": 0.30, "8 prompts": 0.18, "1 prompt, bf16 (ours)": 0.5}


def load_transformers(directory: Path):
    from transformers import CLIPSegForImageSegmentation

    return CLIPSegForImageSegmentation.from_pretrained(directory).eval()


def paired_medians(ours, theirs, runs: int) -> tuple[float, float]:
    """Medians of alternating runs: a neighbour's load or a clock change hits both sides alike."""
    ours(), theirs()
    pairs = [(timed(ours), timed(theirs)) for _ in range(runs)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def theirs_call(model, pixels: torch.Tensor, tokens: torch.Tensor):
    """Transformers' documented way: one image copy per prompt, text encoded in the forward."""
    n = tokens.shape[0]
    with torch.inference_mode():
        return model(pixel_values=pixels.expand(n, -1, -1, -1).contiguous(), input_ids=tokens).logits


def peak_rss_child(side: str, directory: Path) -> float:
    """Peak RSS (MiB) of a fresh process that loads the weights and segments 8 prompts once."""
    out = subprocess.run([sys.executable, __file__, "--child", side, "--weights", str(directory)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def child(side: str, directory: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (352, 352, 3), dtype=np.uint8)
    if side == "ours":
        Segmenter(load_hf(str(directory)), device="cpu", input_size=352).segment(image, PROMPTS)
    else:
        pixels = normalize(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
        theirs_call(load_transformers(directory), pixels, Tokenizer()(PROMPTS))
    # VmHWM, not getrusage: ru_maxrss survives exec, so a child would report its parent's peak.
    status = Path("/proc/self/status").read_text().splitlines()
    print(next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:")))


def gpu_section(directory: Path, image: np.ndarray, runs: int) -> dict:
    """Frames per second on CUDA: ours in fp32, fp16 and fp16 under torch.compile (CUDA graphs),
    against transformers in fp32 and fp16, at 1 and 8 prompts."""
    if not torch.cuda.is_available():
        print("GPU: skipped (no CUDA device on this machine)")
        return {"skipped": "no CUDA device"}

    times = {}  # (who, precision, n prompts) -> seconds
    pixels = normalize(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255).cuda()
    for precision, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        theirs, x = load_transformers(directory).to("cuda", dtype), pixels.to(dtype)
        for n in (1, 8):
            tokens = Tokenizer()(PROMPTS[:n]).cuda()
            times["transformers", precision, n] = cuda_time(
                lambda model=theirs, x=x, t=tokens: theirs_call(model, x, t), runs * 4)
        del theirs
    for precision, compiled in (("fp32", False), ("fp16", False), ("fp16", True)):
        seg = Segmenter(load_hf(str(directory)), device="cuda", precision=precision, input_size=352)
        if compiled:
            # Segmenter calls the model's forward; mode reduce-overhead captures it in CUDA graphs.
            seg.model = torch.compile(seg.model, mode="reduce-overhead")
        for n in (1, 8):
            who = "ours compiled" if compiled else "ours"
            times[who, precision, n] = cuda_time(lambda n=n, seg=seg: seg.segment(image, PROMPTS[:n]), runs * 4)
    for (who, precision, n), seconds in times.items():
        peer = times["transformers", precision, n]
        print(f"GPU {who:14} {precision} {n} prompt(s) {seconds * 1e3:8.2f} ms {1 / seconds:8.1f} frames/s  "
              f"/ transformers {precision}: {seconds / peer:.2f}")
    one, eight = times["ours compiled", "fp16", 1], times["ours compiled", "fp16", 8]
    print(f"GPU targets: fp16 1 prompt >= 300 frames/s (compiled: {1 / one:.0f}); "
          f"8 prompts <= 1.5 x the 1-prompt time (compiled: {eight / one:.2f})")
    return {f"{who} {precision} {n}": {"seconds": t, "fps": 1 / t} for (who, precision, n), t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default="out/bench/engine_vs_transformers.json")
    parser.add_argument("--child", choices=("ours", "theirs"))
    parser.add_argument("--weights")
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.weights))
        return

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        make_weights(directory)
        image = np.random.default_rng(0).integers(0, 256, (352, 352, 3), dtype=np.uint8)
        pixels = normalize(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
        tokenizer = Tokenizer()
        theirs = load_transformers(directory)
        ours = Segmenter(load_hf(str(directory)), device="cpu", input_size=352)
        ours_bf16 = Segmenter(load_hf(str(directory)), device="cpu", precision="bf16", input_size=352)

        def cold(n):
            def run():
                ours.cache.clear()
                ours.segment(image, PROMPTS[:n])
            return run

        cases = {
            "1 prompt, text cached": (lambda: ours.segment(image, PROMPTS[:1]), 1),
            "1 prompt, cold text": (cold(1), 1),
            "4 prompts": (lambda: ours.segment(image, PROMPTS[:4]), 4),
            "8 prompts": (lambda: ours.segment(image, PROMPTS[:8]), 8),
            "8 prompts, cold text": (cold(8), 8),
            "1 prompt, bf16 (ours)": (lambda: ours_bf16.segment(image, PROMPTS[:1]), 1),
        }
        rows = {}
        for name, (fn, n) in cases.items():
            tokens = tokenizer(PROMPTS[:n])
            t_ours, t_theirs = paired_medians(fn, lambda t=tokens: theirs_call(theirs, pixels, t), args.runs)
            rows[name] = {"ours_s": t_ours, "transformers_s": t_theirs, "ratio": t_ours / t_theirs,
                          "target": TARGETS.get(name)}

        fp32 = ours.segment(image, PROMPTS[:1]).probabilities
        bf16 = ours_bf16.segment(image, PROMPTS[:1]).probabilities
        bf16_diff = float(np.abs(fp32 - bf16).max())
        memory = {side: peak_rss_child(side, directory) for side in ("ours", "theirs")}
        gpu = gpu_section(directory, image, args.runs)

    print(f"\nCLIPSeg rd64-refined, 352x352, CPU fp32 ({torch.get_num_threads()} threads), median of {args.runs}")
    print(f"{'case':26} {'ours ms':>9} {'transformers ms':>16} {'ratio':>7} {'target':>7}")
    for name, r in rows.items():
        target = f"<={r['target']}" if r["target"] else ""
        ok = "" if r["target"] is None else ("  met" if r["ratio"] <= r["target"] else "  MISSED")
        print(f"{name:26} {r['ours_s']*1e3:9.1f} {r['transformers_s']*1e3:16.1f} {r['ratio']:7.3f} {target:>7}{ok}")
    print(f"bf16 vs fp32 max |dp| (ours): {bf16_diff:.4f} (target <= 0.05)")
    print(f"peak RSS, 8 prompts, fresh process: ours {memory['ours']:.0f} MiB, "
          f"transformers {memory['theirs']:.0f} MiB, ratio {memory['ours'] / memory['theirs']:.2f}")
    report = {"cases": rows, "bf16_max_abs_diff": bf16_diff, "peak_rss_mib": memory, "gpu": gpu,
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
