"""`make demo`'s main job, end to end in its own processes: with given weights, and without any."""

from __future__ import annotations

import subprocess
import sys

import cv2


def run_demo(tmp_path, *args: str) -> subprocess.CompletedProcess:
    # -P and a cwd outside the checkout: the installed package (with msg/srv) is the one imported.
    return subprocess.run(
        [sys.executable, "-P", "-m", "clipseg_ros.ros.demo", "--device", "cpu", "--out", str(tmp_path / "out"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_demo_writes_overlays_from_topic_and_service(tiny_checkpoint, tmp_path):
    out = run_demo(tmp_path, "--weights", str(tiny_checkpoint))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"topic_coffee.png", "topic_chelsea.png", "topic_astronaut.png", "service_astronaut.png"} <= names
    assert "service_latest_frame.png" in names
    image = cv2.imread(str(tmp_path / "out" / "service_astronaut.png"))
    assert image.shape == (512, 512, 3)
    assert "RANDOM WEIGHTS" not in out.stderr  # real (if tiny) weights were given: no smoke-run warning


def test_demo_without_weights_says_how_to_give_them(tmp_path):
    out = run_demo(tmp_path, "--weights", str(tmp_path / "missing"))
    assert out.returncode == 3
    assert "--weights PATH" in out.stderr and "--random-weights" in out.stderr
