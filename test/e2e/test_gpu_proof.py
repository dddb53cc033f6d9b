"""bench/gpu_proof.py where no GPU is: one line that says so, exit 0, nothing else run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from background import LAST_TIERS_NICENESS, Background

ROOT = Path(__file__).resolve().parents[2]
NO_GPU = not torch.cuda.is_available()


def start_early() -> Background:
    """The proof as a person runs it, started with the session (background.py); on a GPU it is left to a person
    (the test is skipped), as it then runs the whole proof."""
    background = Background(LAST_TIERS_NICENESS)
    report = background.directory / "gpu_proof.json"
    if NO_GPU:
        background.start("gpu_proof", [sys.executable, str(ROOT / "bench" / "gpu_proof.py"), "--json", str(report)],
                         cwd=background.directory)
    return background


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU: run bench/gpu_proof.py itself")
def test_gpu_proof_without_a_gpu_says_so_in_one_line(early):
    run = early.result("gpu_proof")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "gpu_proof: no GPU here (torch sees no CUDA device), nothing to prove on this machine"], run.stdout
    assert "Traceback" not in run.stderr and not (early.directory / "gpu_proof.json").exists()
