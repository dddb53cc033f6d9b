"""Two cameras on one node against two single-camera nodes (the named peer), same streams, same machine.

Both setups get the same two 640x480 rgb8 streams at --rate on /front/image and /left/image for --seconds,
in alternating rounds. Reported per setup: the output rate per camera (masks received / s), the nodes'
RSS (summed for the pair) after the run, and the ratios one-node / pair. Targets (issue 10): RSS <= 0.6x the
pair's, output rate per camera >= the pair's.

    .venv/bin/python bench/multi_camera.py [--seconds 20] [--rate 30] [--rounds 2] [--models tiny full]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
import torch
from node_driver import segment_node_command, spinning, stop, wait_until
from process_memory import memory_mib
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image

from clipseg_ros.engine.checkpoints import save_hf
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig
from clipseg_ros.ros.image_codec import numpy_to_image

CAMERAS = ("front", "left")
MODELS = {"tiny": ClipSegConfig.tiny(), "full": ClipSegConfig()}
PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_frames.xml"


class Client(Node):
    def __init__(self, outputs: dict[str, str]) -> None:
        super().__init__("multi_camera_bench")
        frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        self.template = numpy_to_image(frame, "rgb8")
        self.publishers_ = {c: self.create_publisher(Image, f"/{c}/image", QoSProfile(depth=1)) for c in CAMERAS}
        self.received = {c: 0 for c in CAMERAS}
        for camera, topic in outputs.items():
            self.create_subscription(Image, topic, lambda _, c=camera: self._count(c), QoSProfile(depth=1))

    def _count(self, camera: str) -> None:
        self.received[camera] += 1

    def publish(self) -> None:
        self.template.header.stamp = self.get_clock().now().to_msg()
        for publisher in self.publishers_.values():
            publisher.publish(self.template)


def node_command(weights: Path, name: str, params: dict[str, object], *remaps: str) -> list[str]:
    return segment_node_command(name, {"weights": weights, "device": "cpu", "prompts": ["cup"], **params}, *remaps,
                                "--log-level", "warn")


def run_setup(setup: str, weights: Path, seconds: float, rate: float, workdir: Path) -> dict:
    if setup == "one node":
        commands = [node_command(weights, "clipseg", {"cameras": list(CAMERAS)})]
        outputs = {c: f"/clipseg/{c}/mask" for c in CAMERAS}
    else:
        commands = [node_command(weights, f"clipseg_{c}", {}, "-r", f"image:=/{c}/image") for c in CAMERAS]
        outputs = {c: f"/clipseg_{c}/mask" for c in CAMERAS}
    env = {**os.environ, "FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)}
    nodes = [subprocess.Popen(command, cwd=workdir, env=env) for command in commands]
    try:
        with spinning(Client(outputs)) as client:
            # Every node up, matched and producing masks.
            wait_until(lambda: all(client.received.values()), nodes, 240,
                       lambda: f"{setup}: a node did not produce masks", each_try=client.publish, interval_s=0.2)
            client.received = {c: 0 for c in CAMERAS}
            start = time.perf_counter()
            frames = int(seconds * rate)
            for i in range(frames):
                client.publish()
                time.sleep(max(0.0, start + (i + 1) / rate - time.perf_counter()))
            elapsed = time.perf_counter() - start
            time.sleep(1.0)
            return {
                "rate_hz": {c: client.received[c] / elapsed for c in CAMERAS},
                "rss_mib": sum(memory_mib(n.pid) for n in nodes),
            }
    finally:
        stop(nodes, timeout_s=20)


def _mean(runs: list[dict]) -> dict:
    return {
        "rate_hz": {c: sum(r["rate_hz"][c] for r in runs) / len(runs) for c in CAMERAS},
        "rss_mib": sum(r["rss_mib"] for r in runs) / len(runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each setup, averaged")
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    rclpy.init()
    print(f"two 640x480 rgb8 streams at {args.rate:.0f} Hz for {args.seconds:.0f} s, CPU, 1 prompt")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            torch.manual_seed(0)
            weights = save_hf(ClipSeg(MODELS[model]), Path(tmp) / model)
            # Alternating rounds: the machine's load drifts, and each side should see the same drift.
            rounds = {"one node": [], "pair": []}
            for _ in range(args.rounds):
                for setup, runs in rounds.items():
                    runs.append(run_setup(setup, weights, args.seconds, args.rate, Path(tmp)))
            results = {setup: _mean(runs) for setup, runs in rounds.items()}
            one, pair = results["one node"], results["pair"]
            for setup, r in results.items():
                rates = ", ".join(f"{c} {r['rate_hz'][c]:.2f} Hz" for c in CAMERAS)
                print(f"{model:5} {setup:9}: {rates}; RSS {r['rss_mib']:.0f} MiB")
            rate_ratio = min(one["rate_hz"][c] / max(pair["rate_hz"][c], 1e-9) for c in CAMERAS)
            print(f"{model:5} one node / pair: RSS {one['rss_mib'] / pair['rss_mib']:.2f} (target <= 0.6), "
                  f"output rate per camera, worst camera {rate_ratio:.2f} (target >= 1)")
    rclpy.shutdown()


if __name__ == "__main__":
    main()
