"""Recordings labelled offline against the node fed the same recording (issue 20): frames per second.

A recorded bag (clipseg_ros.ros.recordings.sample_bags: moving shapes, raw rgb8 colour with 16UC1 depth and
camera_info, --size pixels square) is labelled by clipseg-label-bags' labeller in this process at --batch 1 and
at 8 (the weights loaded once, outside the timing; its reading, decoding, depth pairing, outputs, serialisation
and the MCAP writing inside it). The peer: the segment node in its own process with the same parameters, fed the
same frames by a client as fast as it answers (each colour frame with its depth and camera_info; the next one
after the node's segmentation of it), with the same outputs subscribed. Both record the same outputs (mask,
probability, label, segmentation, points, markers, camera_info).

    .venv/bin/python bench/label_bags.py [--model full|tiny] [--frames 48] [--size 320] [--prompts 3]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
import torch
from common import PROMPTS, load_average, make_weights
from node_driver import segment_node_command, spinning, stop, wait_until
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from clipseg_ros.ros.node.frame_outputs import OUTPUT_TYPES
from clipseg_ros.ros.recordings.bag_io import BagReader
from clipseg_ros.ros.recordings.bag_job import BagJob, label_locally
from clipseg_ros.ros.recordings.labeller import RECORDED_OUTPUTS
from clipseg_ros.ros.recordings.run_config import RunConfig
from clipseg_ros.ros.recordings.sample_bags import SampleBagSpec, write_sample_bag

NODE = "clipseg_bag_bench"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
TOPICS = ("image", "camera_info", "depth/image", "depth/camera_info")


def weights_for(model: str, cache: Path) -> Path:
    directory = cache / model
    if not (directory / "config.json").is_file():
        if model == "full":
            make_weights(directory)
        else:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
            from tiny_clipseg import save_tiny_checkpoint

            save_tiny_checkpoint(directory)
    return directory


def parameters(weights: Path, prompts: int, input_size: int) -> dict[str, object]:
    return {
        "weights": str(weights),
        "device": "cpu",
        "input_size": [input_size, input_size],
        "prompts": PROMPTS[:prompts],
        "depth.enabled": True,
    }


def label_offline(bag: Path, params: dict, batch: int, out: Path) -> float:
    """Frames per second of the labelling itself (the engine loaded before the clock starts)."""
    config = RunConfig.make(
        params,
        {},
        batch=batch,
        chunk_s=None,
        image_topics={"": "/camera/image"},
        depth_topics={"": "/camera/depth/image"},
    )
    labeller = config.labeller(lambda _: None)
    # A first batch of this size outside the clock: the node, too, is timed after its warm-up frames.
    labeller.segmenter.segment_batch([np.zeros((64, 64, 3), np.uint8)] * batch, config.settings().prompts)
    job = BagJob(bag, out, "bench", config.settings().prompts, coco=False)
    started = time.perf_counter()
    outcome = label_locally(
        job,
        lambda reader, cameras, span, counts: labeller.label(reader, cameras, span[0], span[1], counts),
        config.cameras,
        None,
        config.continuous,
        lambda: None,
    )
    seconds = time.perf_counter() - started
    if outcome.status != "labelled":
        raise RuntimeError(f"{bag}: {outcome.reason}")
    return outcome.frames / seconds


class Client(Node):
    """Publishes one colour frame (after its depth and camera_info) and waits for the node's outputs of it."""

    def __init__(self) -> None:
        super().__init__("bag_bench_client")
        self.publishers_ = {
            t: self.create_publisher(CameraInfo if t.endswith("camera_info") else Image, f"/camera/{t}", RELIABLE)
            for t in TOPICS
        }
        self.done = threading.Condition()
        self.received: set[tuple[int, int]] = set()
        for name in RECORDED_OUTPUTS:  # the node computes only what someone reads: the labeller's outputs
            callback = self._on_segmentation if name == "segmentation" else (lambda _msg: None)
            self.create_subscription(OUTPUT_TYPES[name], f"/{NODE}/{name}", callback, RELIABLE)

    def _on_segmentation(self, msg) -> None:
        with self.done:
            self.received.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
            self.done.notify_all()

    def send(self, frame: dict) -> bool:
        for topic in ("depth/camera_info", "depth/image", "camera_info", "image"):
            self.publishers_[topic].publish(frame[topic])
        key = (frame["image"].header.stamp.sec, frame["image"].header.stamp.nanosec)
        with self.done:
            return self.done.wait_for(lambda: key in self.received, timeout=60.0)


def node_rate(bag: Path, params: dict, log: Path) -> float:
    """Frames per second of the node fed the bag's frames one after the other, as fast as it answers."""
    with BagReader(bag) as reader:
        by_topic = {t: [m.msg for m in reader.messages([f"/camera/{t}"])] for t in TOPICS}
    frames = [dict(zip(TOPICS, messages, strict=True)) for messages in zip(*by_topic.values(), strict=True)]
    command = segment_node_command(NODE, params, *(arg for t in TOPICS for arg in ("-r", f"{t}:=/camera/{t}")))
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir())
    try:
        with spinning(Client()) as client:
            return _rate(client, frames, process, log)
    finally:
        stop([process])


def _rate(client: Client, frames: list[dict], process: subprocess.Popen, log: Path) -> float:
    wait_until(lambda: all(p.get_subscription_count() for p in client.publishers_.values()), [process], 180,
               lambda: f"the node did not start: {log.read_text()[-2000:]}")
    time.sleep(1.0)  # the node's subscriptions of depth and camera_info settle too
    for frame in frames[:2]:  # warm-up (the first frames pay for allocation)
        client.send(frame)
    started = time.perf_counter()
    answered = sum(client.send(frame) for frame in frames)
    seconds = time.perf_counter() - started
    if answered < len(frames):
        raise RuntimeError(f"the node answered {answered} of {len(frames)} frames: {log.read_text()[-2000:]}")
    return len(frames) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("full", "tiny"), default="full")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", type=int, default=320, help="the recording's frame side, pixels")
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "clipseg_bench_weights")
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ["ROS_DOMAIN_ID"] = str(random.randint(100, 200))
    weights = weights_for(args.model, args.cache)
    params = parameters(weights, args.prompts, 352 if args.model == "full" else 64)
    work = Path(tempfile.mkdtemp(prefix="label_bags_bench_"))
    bag = write_sample_bag(work / "recording", SampleBagSpec(frames=args.frames, size=args.size)).path
    print(
        f"{args.frames} frames of {args.size}x{args.size} rgb8 + 16UC1 depth, {args.prompts} prompts, "
        f"{args.model} model, torch threads {torch.get_num_threads()}, {load_average()}"
    )
    rates = {f"label_bags batch {b}": label_offline(bag, params, b, work / f"batch{b}") for b in (1, 8)}
    rclpy.init()
    try:
        rates["node, fed as fast as it answers"] = node_rate(bag, params, work / "node.log")
    finally:
        rclpy.try_shutdown()
    node = rates["node, fed as fast as it answers"]
    for name, rate in rates.items():
        print(f"  {name:34s} {rate:7.2f} frames/s  {rate / node:5.2f}x the node")
    print(f"  ({load_average()})")


if __name__ == "__main__":
    main()
