"""SIGINT/SIGTERM in a loop: idle nodes, nodes with a frame in flight, nodes with a service call in flight.

Each round starts the segment node (a tiny random model; --input-size sets how long a frame takes), brings it
into one situation, sends a signal, and records the exit code, the time from signal to exit, whether the log
has an ERROR or a traceback, and whether a call in flight was answered. Target (issue 9): every round exits 0
within 2 s, with no ERROR and no traceback, and every call in flight answered.

    .venv/bin/python bench/shutdown_loop.py [--rounds 20] [--idle-s 3]
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
import torch
from node_driver import segment_node_command, spinning
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image

from clipseg_ros.engine.checkpoints import save_hf
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig
from clipseg_ros.ros.image_codec import numpy_to_image
from clipseg_ros.srv import Segment

SITUATIONS = ("idle", "streaming", "service call")


class Client(Node):
    def __init__(self, name: str) -> None:
        super().__init__("shutdown_bench")
        self.image = self.create_publisher(Image, "/image", QoSProfile(depth=1))
        self.masks = 0
        self.create_subscription(Image, f"/{name}/mask", self._on_mask, QoSProfile(depth=1))
        self.segment = self.create_client(Segment, f"/{name}/segment")
        self.frame = numpy_to_image(np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8), "rgb8")

    def _on_mask(self, _) -> None:
        self.masks += 1


def _signal_during(situation: str, sig: int, client: Client, node: subprocess.Popen, args, log_path: Path):
    """The signal sent to the node in `situation`: seconds to its exit, and what a call in flight was answered."""
    stop = threading.Event()
    future = None
    try:
        if not client.segment.wait_for_service(timeout_sec=120):
            raise RuntimeError(f"{log_path.stem} never came up:\n{log_path.read_text()}")
        if situation == "idle":
            time.sleep(args.idle_s)
        else:

            def stream():
                while not stop.is_set():
                    client.frame.header.stamp = client.get_clock().now().to_msg()
                    client.image.publish(client.frame)
                    time.sleep(1 / 30)

            threading.Thread(target=stream, daemon=True).start()
            deadline = time.monotonic() + 60
            while client.masks == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            if situation == "service call":
                future = client.segment.call_async(Segment.Request(image=client.frame, prompts=["a", "b", "c", "d"]))
                time.sleep(0.02)
        signalled = time.monotonic()
        node.send_signal(sig)
        node.wait(timeout=60)
        exit_s = time.monotonic() - signalled
        answered = None
        if future is not None:
            done = threading.Event()
            future.add_done_callback(lambda _: done.set())
            # What the caller got: the refusal's reason, or "success" when the call ended before the signal.
            if done.wait(5.0):
                response = future.result()
                answered = "success" if response.success else response.message
            else:
                answered = False
    finally:
        stop.set()  # the stream's thread publishes no more on the client
    return exit_s, answered


def run_round(index: int, situation: str, sig: int, weights: Path, args, workdir: Path) -> dict:
    name = f"clipseg_shutdown_{index}"
    log_path = workdir / f"{name}.log"
    params = {"weights": weights, "device": "cpu", "prompts": ["cup"], "input_size": [args.input_size] * 2}
    with open(log_path, "w") as log:
        node = subprocess.Popen(segment_node_command(name, params), cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        with spinning(Client(name)) as client:
            exit_s, answered = _signal_during(situation, sig, client, node, args, log_path)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
    log = log_path.read_text()
    return {
        "situation": situation,
        "signal": signal.Signals(sig).name,
        "code": node.returncode,
        "exit_s": exit_s,
        "clean_log": "ERROR" not in log and "Traceback" not in log,
        "answered": answered,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--idle-s", type=float, default=3.0, help="how long an idle node waits before the signal")
    parser.add_argument("--input-size", type=int, default=512, help="model input side: sets a frame's inference time")
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    rclpy.init()
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        weights = save_hf(ClipSeg(ClipSegConfig.tiny()).eval(), Path(tmp) / "tiny")
        cases = itertools.cycle(itertools.product(SITUATIONS, (signal.SIGINT, signal.SIGTERM)))
        for index, (situation, sig) in zip(range(args.rounds), cases, strict=False):
            result = run_round(index, situation, sig, weights, args, Path(tmp))
            answered = result["answered"]
            ok = result["code"] == 0 and result["exit_s"] <= 2.0 and result["clean_log"] and answered is not False
            rounds.append((ok, result))
            call = "" if answered is None else f", call {f'answered: {answered}' if answered else 'NOT answered'}"
            log = "clean" if result["clean_log"] else "ERROR/traceback"
            print(
                f"{index + 1:2} {situation:13} {result['signal']:8} exit {result['code']} in {result['exit_s']:.2f} s, "
                f"log {log}{call}{'' if ok else '  <- FAILED'}"
            )
    rclpy.shutdown()
    times = sorted(r["exit_s"] for _, r in rounds)
    print(
        f"{sum(ok for ok, _ in rounds)} of {len(rounds)} clean (exit 0 within 2 s, no ERROR, calls answered); "
        f"exit time median {times[len(times) // 2]:.2f} s, max {times[-1]:.2f} s"
    )


if __name__ == "__main__":
    main()
