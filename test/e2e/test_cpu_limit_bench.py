"""bench/cpu_limit.py as a person runs it, on a tiny checkpoint: the table, the verdict line and the JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import tiny_clipseg
from background import LAST_TIERS_NICENESS, Background

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["pre-processing", "backbone", "decoder", "post-processing", "whole frame"]
PRECISIONS = {"bf16": (), "fp32": ("--precision", "fp32")}  # bf16 is the bench's default


def start_early() -> Background:
    """The bench at each precision, started with the session (background.py); on one thread each, as before."""
    background = Background(LAST_TIERS_NICENESS)
    checkpoint = tiny_clipseg.save_tiny_checkpoint(background.directory / "tiny_checkpoint")
    for name, options in PRECISIONS.items():
        background.start(name, [
            sys.executable, str(ROOT / "bench" / "cpu_limit.py"), "--weights", str(checkpoint), "--runs", "1",
            "--camera", "80x60", "--threads", "1", "--json", str(background.directory / f"{name}.json"), *options,
        ], cwd=background.directory)
    return background


def stages(early: Background, precision: str) -> dict:
    run = early.result(precision, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads((early.directory / f"{precision}.json").read_text())["stages"]


def test_cpu_limit_prints_the_frame_beside_its_limit(early):
    run = early.result("bf16", timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert any(line.startswith("peak bf16 GEMM: ") and "TFLOP/s" in line for line in lines), run.stdout
    assert [line.split()[0] for line in lines if line.split()[:1] and line.split()[0] in ("pre-processing",
            "backbone", "decoder", "post-processing")] == STAGES[:4]
    assert any(line.startswith("whole frame: ") and "matrix-product limit (target <= 2.5x" in line and "load " in line
               for line in lines), run.stdout
    bf16 = stages(early, "bf16")
    assert list(bf16) == STAGES
    # The stages are the frame's parts: their matrix products add up to the whole frame's.
    assert bf16["backbone"]["flops"] > 0 and bf16["decoder"]["flops"] > 0
    assert sum(bf16[name]["flops"] for name in STAGES[:4]) == bf16["whole frame"]["flops"]
    assert bf16["whole frame"]["ratio"] == bf16["whole frame"]["seconds"] / bf16["whole frame"]["limit_s"]

    # bf16 runs fused and packed operators fp32 does not: the same model's FLOPs are counted alike on both paths.
    fp32 = stages(early, "fp32")
    assert {name: s["flops"] for name, s in fp32.items()} == {name: s["flops"] for name, s in bf16.items()}
