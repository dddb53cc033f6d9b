"""clipseg-label-bags as a process a user stops hard (issue 20): no output that looks finished is left behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bag_helpers import PROMPTS, digests, label

from clipseg_ros.ros.recordings.sample_bags import SampleBagSpec, write_sample_bag


@pytest.fixture
def params_file(tmp_path) -> Path:
    path = tmp_path / "segment.yaml"
    path.write_text("/**:\n  ros__parameters:\n    device: cpu\n    precision: fp32\n    input_size: [64, 64]\n")
    return path


def test_an_interrupted_run_leaves_no_bag_that_looks_finished(params_file, tiny_checkpoint, tmp_path):
    """The command killed (SIGKILL: nothing of it runs on) while it writes: only `<name>_labels.partial` is left,
    never `<name>_labels`; the next run replaces it and its output is the one an uninterrupted run writes."""
    sample = write_sample_bag(tmp_path / "in", SampleBagSpec(frames=120))
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-P",
        "-m",
        "clipseg_ros.commands.label_bags",
        str(sample.path),
        "--params-file",
        str(params_file),
        "--weights",
        str(tiny_checkpoint),
        "--prompts",
        PROMPTS,
        "--output",
        str(out),
        "--image-topic",
        "/camera/image",
        "--depth-topic",
        "/camera/depth/image",
        "--quiet",
        "--batch",
        "1",
    ]
    run = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = out / "in_labels.partial"
    deadline = time.monotonic() + 120
    while not list(partial.glob("*.mcap")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # some frames written
    run.kill()
    run.wait()
    assert run.returncode == -signal.SIGKILL, run.stderr.read().decode()
    assert partial.is_dir() and not (out / "in_labels").exists()
    assert label(params_file, tiny_checkpoint, out, sample.path, extra=("--batch", "1")) == 0
    assert not partial.exists()
    assert label(params_file, tiny_checkpoint, tmp_path / "clean", sample.path, extra=("--batch", "1")) == 0
    assert digests(out / "in_labels") == digests(tmp_path / "clean" / "in_labels")
