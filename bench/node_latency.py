"""The segment node under a 30 Hz camera: latency, overhead over the model, drops, backlog, memory.

A client publishes 640x480 rgb8 frames at --rate to a node started in its own process, and for
each mask received measures the end-to-end latency (frame stamp to mask received): the age of
each output when it arrives. The node's model time comes from its /diagnostics
(inference_ms_mean). The newest output's age (now minus the stamp of the newest mask) is also
sampled every 50 ms between outputs: a sawtooth from the arrival age up to the arrival age plus
one model time. A backlog would make both grow without bound. The node's RSS is read from /proc
at the start, after a third of the frames and at the end.

Each Fast DDS setting runs in its own client process (Fast DDS reads its profile once per
process): `default` (a 512 KiB shared-memory segment, so frames go over UDP loopback) and
`large-frames` (config/fastdds_large_frames.xml, for both the client and the node).

    .venv/bin/python bench/node_latency.py [--frames 300] [--models echo tiny full] [--dds default large-frames]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from node_driver import segment_node_command, spinning, stop, wait_until
from process_memory import memory_mib
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image

from clipseg_ros.engine.checkpoints import save_hf
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig
from clipseg_ros.ros.image_codec import image_to_rgb, numpy_to_image

PROFILES = {
    "default": None,
    "large-frames": Path(__file__).resolve().parents[1] / "config" / "fastdds_large_frames.xml",
}
MODELS = {
    "tiny": ClipSegConfig.tiny(),
    "full": ClipSegConfig(),
}


class Client(Node):
    def __init__(self, frame: np.ndarray):
        super().__init__("node_bench_client")
        # Reliable, as most camera drivers publish (SystemDefaults): best-effort 900 kB frames over
        # Fast DDS UDP fragments lose most frames in transport, which would measure DDS, not the node.
        self.pub = self.create_publisher(Image, "/image", QoSProfile(depth=1))
        self.template = numpy_to_image(frame, "rgb8")
        self.template.header.frame_id = "bench_camera"
        self.latencies: list[float] = []
        self.newest_stamp: float | None = None
        self.diagnostics: dict[str, str] = {}
        self.create_subscription(Image, "/clipseg/mask", self.on_mask, QoSProfile(depth=1))
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 10)

    def publish_frame(self) -> None:
        self.template.header.stamp = self.get_clock().now().to_msg()
        self.pub.publish(self.template)

    def on_mask(self, msg: Image) -> None:
        now = time.time()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.latencies.append(now - stamp)
        self.newest_stamp = stamp

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if "segmentation" in status.name:
                self.diagnostics = {kv.key: kv.value for kv in status.values}


def echo_node() -> None:
    """The peer: frame in, a mono8 image of its size out with its header, no model. Its latency is
    what ROS transport and message conversion cost on this machine, the floor under any node's."""
    rclpy.init()
    node = Node("echo")
    publisher = node.create_publisher(Image, "/clipseg/mask", QoSProfile(depth=1))

    def echo(msg: Image) -> None:
        rgb = image_to_rgb(msg)
        publisher.publish(numpy_to_image(np.ascontiguousarray(rgb[..., 0]), "mono8", msg.header))

    node.create_subscription(Image, "/image", echo, QoSProfile(depth=1))
    try:
        # Not rclpy.spin: now and then the wake-up of rclpy's SIGTERM handler was lost and the peer waited for
        # frames forever (3 of 12 bench runs); a bounded wait sees the shut-down context.
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # terminated by the bench: the normal end


def run_model(name: str, frames: int, rate: float, workdir: Path) -> dict:
    if name == "echo":
        command = [sys.executable, __file__, "--echo-node"]
    else:
        torch.manual_seed(0)
        weights = save_hf(ClipSeg(MODELS[name]), workdir / name)
        command = segment_node_command("clipseg", {"weights": weights, "device": "cpu", "prompts": ["cup"]},
                                       "--log-level", "warn")
    node = subprocess.Popen(command, cwd=workdir)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    try:
        with spinning(Client(frame)) as client:
            return _measure(client, node, name, frames, rate)
    finally:
        stop([node], timeout_s=20)


def _measure(client: Client, node: subprocess.Popen, name: str, frames: int, rate: float) -> dict:
    # Until the node is up, matched and has produced a mask.
    wait_until(lambda: bool(client.latencies), [node], 180,
               lambda: f"node for {name} did not produce a mask (exit {node.poll()})", each_try=client.publish_frame,
               interval_s=0.5)
    client.latencies.clear()
    client.newest_stamp = None  # the start-up masks' stamps are seconds old: not part of the run
    rss_start = memory_mib(node.pid)
    ages = []
    period = 1.0 / rate
    start = time.perf_counter()
    for i in range(frames):
        client.publish_frame()
        target = start + (i + 1) * period
        while (now := time.perf_counter()) < target:
            if client.newest_stamp is not None:
                ages.append(time.time() - client.newest_stamp)
            time.sleep(min(0.05, max(0.0, target - now)))
        if i == frames // 3:  # allocator and caches warmed up: from here RSS should stay flat
            rss_third = memory_mib(node.pid)
    elapsed = time.perf_counter() - start
    model_ms = float(client.diagnostics.get("inference_ms_mean", "0"))
    time.sleep(max(1.5, 3 * model_ms / 1000))  # let the last frame's mask arrive
    model_ms = float(client.diagnostics.get("inference_ms_mean", "0"))
    arrival_to_output_ms = float(client.diagnostics.get("latency_ms_mean", "0"))
    rss_end = memory_mib(node.pid)
    received = len(client.latencies)
    median_ms = 1000 * statistics.median(client.latencies)
    return {
        "frames_published": frames,
        "masks_received": received,
        "output_rate_hz": received / elapsed,
        "input_rate_hz": frames / elapsed,
        "dropped": frames - received,
        "node_reported_dropped": client.diagnostics.get("frames_dropped"),
        "latency_ms_median": median_ms,
        "latency_ms_p90": 1000 * float(np.percentile(client.latencies, 90)),
        "model_ms_mean": model_ms,
        "overhead_ms": median_ms - model_ms,
        # Inside the node but outside the model, from its diagnostics: the frame's wait in the
        # mailbox for the previous inference to end, decoding and publishing. The rest of the
        # overhead is ROS transport of the frame and the mask (the echo peer's latency).
        "node_wait_and_io_ms": arrival_to_output_ms - model_ms,
        "arrival_age_p95_over_model_time": float(np.percentile(client.latencies, 95)) * 1000 / model_ms
        if model_ms else float("nan"),
        "newest_output_age_ms_median": 1000 * statistics.median(ages),
        "newest_output_age_ms_p95": 1000 * float(np.percentile(ages, 95)),
        "newest_output_age_ms_max": 1000 * max(ages),
        "age_p95_over_model_time": float(np.percentile(ages, 95)) * 1000 / model_ms if model_ms else float("nan"),
        "node_rss_mib_start": rss_start,
        "node_rss_mib_third": rss_third,
        "node_rss_mib_end": rss_end,
    }


def run_profile(profile: str, args: argparse.Namespace) -> dict:
    """One client process under one Fast DDS setting; the node processes it starts inherit it."""
    env = dict(os.environ)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    if PROFILES[profile] is not None:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILES[profile])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        subprocess.run([sys.executable, __file__, "--client", "--json", str(out), "--frames", str(args.frames),
                        "--rate", str(args.rate), "--models", *args.models], env=env, check=True,
                       timeout=300 * len(args.models))
        return json.loads(out.read_text())


def client_main(args: argparse.Namespace) -> None:
    rclpy.init()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            results[name] = run_model(name, args.frames, args.rate, Path(tmp))
    rclpy.shutdown()
    Path(args.json).write_text(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--models", nargs="+", default=["echo", "tiny", "full"], choices=["echo", *MODELS],
                        help="echo: the no-model peer node (ROS transport and conversion only)")
    parser.add_argument("--dds", nargs="+", default=list(PROFILES), choices=list(PROFILES),
                        help="Fast DDS settings to compare: default, or config/fastdds_large_frames.xml")
    parser.add_argument("--echo-node", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", default="out/bench/node_latency.json")
    args = parser.parse_args()
    if args.echo_node:
        echo_node()
        return
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(102, 200) % 100 + 1))
    if args.client:
        client_main(args)
        return
    results = {f"{profile}/{name}": r for profile in args.dds for name, r in run_profile(profile, args).items()}
    print(f"\nsegment node, 640x480 rgb8 at {args.rate:.0f} Hz, {args.frames} frames, CPU, 1 prompt")
    keys = ["input_rate_hz", "output_rate_hz", "dropped", "latency_ms_median", "latency_ms_p90", "model_ms_mean",
            "overhead_ms", "node_wait_and_io_ms", "arrival_age_p95_over_model_time",
            "newest_output_age_ms_median", "newest_output_age_ms_p95", "newest_output_age_ms_max",
            "age_p95_over_model_time", "node_rss_mib_start", "node_rss_mib_third", "node_rss_mib_end"]
    width = max(12, *(len(column) + 2 for column in results))
    print(f"{'':32}" + "".join(f"{column:>{width}}" for column in results))
    for key in keys:
        print(f"{key:32}" + "".join(f"{float(r[key]):{width}.1f}" for r in results.values()))
    for profile in args.dds:
        floor = results.get(f"{profile}/echo", {}).get("latency_ms_median")
        for column, r in results.items():
            if floor and column.startswith(f"{profile}/") and not column.endswith("/echo"):
                print(f"{column}: overhead {r['overhead_ms']:.1f} ms = echo peer's transport floor {floor:.1f} ms "
                      f"+ {r['overhead_ms'] - floor:.1f} ms")
    if "default/echo" in results and "large-frames/echo" in results:
        ratio = results["large-frames/echo"]["latency_ms_median"] / results["default/echo"]["latency_ms_median"]
        print(f"echo peer latency, large-frames / default: {ratio:.2f}")
    print("targets: overhead_ms <= 10; for a model slower than the frame period, the newest output's age "
          "<= 2 model times (arrival_age_p95_over_model_time; age_p95_over_model_time samples between outputs "
          "too, which adds up to one model time by construction); node RSS flat")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
