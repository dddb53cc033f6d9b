"""`make demo`: the whole ROS graph on sample photos, with the results written as overlay PNGs.

Starts the segment node and the sample camera (scikit-image photos) as their own processes, sends prompts
over the `/clipseg/prompt` topic and the `/clipseg/segment` service, and writes what comes back to
`out/demo/`. Weights: `--weights` (a hub id, downloaded once, or a local path). `--random-weights` is a
smoke run of the graph with an untrained tiny model; `--fallback-random-weights` (what `make demo` passes)
switches to it, loudly, only when the weights cannot be had, e.g. offline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
import torch

from clipseg_ros.checkpoints import DEFAULT_WEIGHTS, save_hf
from clipseg_ros.model import ClipSeg, ClipSegConfig
from clipseg_ros.overlay import render_overlay
from clipseg_ros.ros.demo_client import DemoClient
from clipseg_ros.ros.image_codec import image_to_numpy
from clipseg_ros.ros.sample_publisher import SAMPLES, sample_image
from clipseg_ros.ros.segment_node import EXIT_WEIGHTS_UNAVAILABLE

RANDOM_BANNER = "RANDOM WEIGHTS: these masks mean nothing"
TOPIC_PROMPTS = "a cup of coffee; a cat; a person"
SERVICE_PROMPTS = ["a rocket", "a flag", "a face"]
LOAD_TIMEOUT_S = 600.0  # first run with hub weights downloads about 600 MB


def write_random_weights(directory: str | os.PathLike, seed: int = 0) -> Path:
    """An untrained CLIPSeg small enough to run anywhere, saved as a Hugging Face checkpoint."""
    torch.manual_seed(seed)
    return save_hf(ClipSeg(ClipSegConfig.tiny()).eval(), directory)


def shout(lines: list[str]) -> None:
    bar = "!" * 78
    print("\n".join([bar, *(f"!!  {line}" for line in lines), bar]), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipseg_ros.ros.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help="hub id or local path (default: %(default)s)")
    parser.add_argument("--random-weights", action="store_true", help="smoke run: untrained tiny model")
    parser.add_argument(
        "--fallback-random-weights",
        action="store_true",
        help="when the weights cannot be loaded, say so and continue as with --random-weights",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda:N (default: %(default)s)")
    parser.add_argument("--out", default="out/demo", type=Path, help="where the PNGs go (default: %(default)s)")
    args = parser.parse_args(argv)

    # A self-contained graph: stay on this machine, on a domain of our own unless the user chose one.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    # As the launch file does: shared memory large enough for the camera frames and probability maps.
    profile = share_directory() / "config" / "fastdds_large_frames.xml"
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    print(
        f"demo graph on ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
        f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']} "
        f"FASTDDS_DEFAULT_PROFILES_FILE={os.environ['FASTDDS_DEFAULT_PROFILES_FILE']}",
        flush=True,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clipseg_demo_") as tmp:
        return DemoRun(args, Path(tmp)).run()


class DemoRun:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.random = args.random_weights
        self.processes: list[subprocess.Popen] = []

    def run(self) -> int:
        weights = self._random_weights() if self.random else self.args.weights
        rclpy.init()
        try:
            client = DemoClient()
            spinner = threading.Thread(target=rclpy.spin, args=(client,), daemon=True)
            spinner.start()
            code = self._start_node(weights, client)
            if code == EXIT_WEIGHTS_UNAVAILABLE and self.args.fallback_random_weights and not self.random:
                shout([f"weights {weights!r} could not be loaded (reason above).", "Continuing as --random-weights."])
                self.random = True
                code = self._start_node(self._random_weights(), client)
            if code == EXIT_WEIGHTS_UNAVAILABLE:
                print(
                    "demo: no weights. Pass a local checkpoint with --weights PATH "
                    "(make demo DEMO_ARGS='--weights PATH'), or run the graph untrained with --random-weights.",
                    file=sys.stderr,
                )
                return code
            if code is not None:
                print(f"demo: the segment node exited with code {code}", file=sys.stderr)
                return code
            self._spawn("sample_publisher", ["--ros-args", "-p", "rate_hz:=2.0"])
            topic, service = self._topic_phase(client), self._service_phase(client)
            self._summary(client, topic + service)
            if len(topic) < len(SAMPLES) or len(service) < 2:
                print(
                    f"demo: FAILED, some outputs never came: {len(topic)}/{len(SAMPLES)} topic overlays, "
                    f"{len(service)}/2 service results (see the log above)",
                    file=sys.stderr,
                )
                return 1
            return 0
        finally:
            self._stop_processes()
            rclpy.try_shutdown()

    def _random_weights(self) -> str:
        shout([RANDOM_BANNER, "Smoke run of the whole graph with an untrained tiny model."])
        return str(write_random_weights(self.tmp / "random_weights"))

    def _spawn(self, module: str, ros_args: list[str]) -> subprocess.Popen:
        # -P: never import a source checkout in the working directory over the installed package (with msg/srv).
        process = subprocess.Popen([sys.executable, "-P", "-m", f"clipseg_ros.ros.{module}", *ros_args])
        self.processes.append(process)
        return process

    def _start_node(self, weights: str, client) -> int | None:
        """None once the node serves, else its exit code."""
        params = share_directory() / "config" / "segment.yaml"
        overrides = ["-p", f"weights:={weights}", "-p", f"device:={self.args.device}"]
        node = self._spawn("segment_node", ["--ros-args", "--params-file", str(params), *overrides])
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while time.monotonic() < deadline:
            if node.poll() is not None:
                self.processes.remove(node)
                return node.returncode
            if client.segment.wait_for_service(timeout_sec=0.5):
                return None
        raise TimeoutError(f"the segment node did not come up within {LOAD_TIMEOUT_S:.0f} s")

    def _topic_phase(self, client) -> list[Path]:
        sizes = {sample_image(name).shape[:2]: name for name in SAMPLES}
        labels = client.send_prompt(TOPIC_PROMPTS)
        print(f"demo: prompts over /clipseg/prompt -> label_info {labels}", flush=True)
        overlays = client.collect_overlays(lambda msg: sizes.get((msg.height, msg.width)), len(sizes), timeout=120.0)
        written = []
        for name, image in overlays.items():
            written.append(self._write(f"topic_{name}.png", image))
        return written

    def _service_phase(self, client) -> list[Path]:
        written = []
        image = sample_image("astronaut")
        response = client.call_segment(image, SERVICE_PROMPTS)
        print(f"demo: /clipseg/segment on astronaut: {response.message}", flush=True)
        if response.success:
            labels = label_image(response)
            written.append(self._write("service_astronaut.png", render_overlay(image, labels, list(response.labels))))
        client.wait_for_frames(2)
        response = client.call_segment(None, ["a cat"])  # no image: the node's latest camera frame
        print(f"demo: /clipseg/segment on the latest frame: {response.message}", flush=True)
        frame = client.frame_at(response.header.stamp) if response.success else None
        if frame is not None:
            labels = label_image(response)
            overlay = render_overlay(frame, labels, list(response.labels))
            written.append(self._write("service_latest_frame.png", overlay))
        return written

    def _write(self, name: str, rgb: np.ndarray) -> Path:
        if self.random:  # on the picture itself: a PNG travels without its log
            rgb = with_warning(rgb, RANDOM_BANNER)
        path = self.args.out / name
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return path

    def _summary(self, client, written: list[Path]) -> None:
        print("demo: wrote " + ", ".join(str(p) for p in written), flush=True)
        if client.diagnostics:
            print("demo: node diagnostics " + json.dumps(client.diagnostics), flush=True)
        if self.random:
            shout([RANDOM_BANNER, "The graph ran end to end; for real masks pass --weights."])

    def _stop_processes(self) -> None:
        for process in self.processes:
            process.send_signal(2)  # SIGINT: what ros2 launch sends
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def share_directory() -> Path:
    """share/clipseg_ros: from the ament index in a sourced ROS workspace, else the venv prefix (make setup)."""
    if os.environ.get("AMENT_PREFIX_PATH"):
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("clipseg_ros"))
    return Path(sys.prefix) / "share" / "clipseg_ros"


def with_warning(rgb: np.ndarray, text: str) -> np.ndarray:
    """A red band with `text` across the bottom (the top holds the overlay's legend)."""
    out = rgb.copy()
    scale = max(0.4, min(out.shape[:2]) / 700)
    band = int(32 * scale) + 8
    cv2.rectangle(out, (0, out.shape[0] - band), (out.shape[1], out.shape[0]), (200, 0, 0), -1)
    org = (8, out.shape[0] - band // 3)
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, round(2 * scale)), cv2.LINE_AA)
    return out


def label_image(response) -> np.ndarray:
    """0 background, k = prompt k where it is the likeliest above the mask threshold (as ~/label)."""
    probabilities = np.stack([image_to_numpy(p) for p in response.probabilities])
    masks = np.stack([image_to_numpy(m) > 0 for m in response.masks])
    return np.where(masks.any(axis=0), probabilities.argmax(axis=0) + 1, 0).astype(np.uint8)


if __name__ == "__main__":
    sys.exit(main())
