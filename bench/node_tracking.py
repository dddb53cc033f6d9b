"""Objects over time, setting 2 (issue 19): the whole node fed a synthetic sequence, scored against its true ids;
and what tracking costs the node per frame.

The node runs in its own process on the demo's trained model (clipseg_ros.train.shapes_model, cached under
out/shapes_model; trained first when the cache is stale), prompts the sequence's three shapes, depth on. A client
publishes each frame of clipseg_ros.train.synthetic_sequence (160x160 at 15 Hz stamps, with its aligned depth and
camera_info) and waits for that frame's ~/segmentation before the next (lockstep: no frame is dropped, so the
score is the model's and the tracker's, not the machine's). The published instances' track ids and masks are
scored by tracking_eval.score (py-motmetrics: IDF1, ID switches, MOTA; TrackEval: HOTA, DetA, AssA). The same
frames go once with tracking.enabled false: the round trip per frame (image published to segmentation received,
median) with tracking on and off is the tracker's cost in the node (target: on within 5 % of off).

    .venv/bin/python bench/node_tracking.py [--seeds 0] [--frames 300]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from node_driver import segment_node_command, spinning, stop, wait_until
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from clipseg_ros.msg import Segmentation
from clipseg_ros.ros.image_codec import numpy_to_image
from clipseg_ros.ros.messages import track_masks
from clipseg_ros.train.shapes_model import shapes_model
from clipseg_ros.train.synthetic_sequence import LABELS, SequenceSettings, synthetic_sequence
from clipseg_ros.train.tracking_eval import score

NODE = "clipseg_tracking_bench"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class Client(Node):
    def __init__(self) -> None:
        super().__init__("tracking_bench_client")
        self.image = self.create_publisher(Image, "/image", RELIABLE)
        self.info = self.create_publisher(CameraInfo, "/camera_info", RELIABLE)
        self.depth = self.create_publisher(Image, "/depth/image", RELIABLE)
        self.depth_info = self.create_publisher(CameraInfo, "/depth/camera_info", RELIABLE)
        self.received: dict[tuple[int, int], tuple[float, Segmentation]] = {}
        self.arrived = threading.Condition()
        self.create_subscription(Segmentation, f"/{NODE}/segmentation", self._on_segmentation, RELIABLE)

    def _on_segmentation(self, msg: Segmentation) -> None:
        with self.arrived:
            self.received[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = (time.perf_counter(), msg)
            self.arrived.notify_all()

    def send(self, header: Header, rgb: np.ndarray, depth: np.ndarray, info: CameraInfo, timeout: float = 10.0):
        """(round trip in seconds, the frame's Segmentation), resent until it comes (None after `timeout`)."""
        key = (header.stamp.sec, header.stamp.nanosec)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.info.publish(info)
            self.depth_info.publish(info)
            self.depth.publish(numpy_to_image(depth, "32FC1", header))
            time.sleep(0.01)  # the depth frame is in the node before its colour frame
            sent = time.perf_counter()
            self.image.publish(numpy_to_image(rgb, "rgb8", header))
            with self.arrived:
                if self.arrived.wait_for(lambda: key in self.received, timeout=2.0):
                    arrived, msg = self.received.pop(key)
                    return arrived - sent, msg
        return None


def camera_info(settings: SequenceSettings, header: Header) -> CameraInfo:
    k = settings.intrinsics()
    info = CameraInfo(header=header, width=settings.size, height=settings.size, distortion_model="plumb_bob")
    info.d = [0.0] * 5
    info.k = [k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0]
    return info


def run_node(weights: Path, threshold: float, tracking: bool, frames_of: dict, log: Path) -> dict:
    """One node process over every sequence: per seed its hypotheses, and the round trips."""
    params = {
        "weights": weights.resolve(), "device": "cpu", "input_size": [96, 96], "threshold": threshold,
        "prompts": list(LABELS), "depth.enabled": True, "depth.sync_tolerance_s": 0.02, "tracking.enabled": tracking,
    }
    with log.open("w") as out:
        process = subprocess.Popen(segment_node_command(NODE, params), stdout=out, stderr=subprocess.STDOUT,
                                   cwd=tempfile.gettempdir())
    try:
        with spinning(Client()) as client:
            wait_until(lambda: client.image.get_subscription_count() and client.depth.get_subscription_count(),
                       [process], 120, lambda: f"the node did not start: {log.read_text()[-2000:]}")
            return _track(client, frames_of, log)
    finally:
        stop([process])


def _track(client: Client, frames_of: dict, log: Path) -> dict:
    runs, trips = {}, []
    for seed, frames in frames_of.items():
        hypotheses = []
        for number, frame in enumerate(frames):
            stamp_ns = round((1000 * seed + frame.stamp_s) * 1e9)  # later seeds later: no stamp goes back
            header = Header(frame_id="camera_optical_frame")
            header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            answer = client.send(header, frame.image, frame.depth, camera_info(SequenceSettings(), header))
            if answer is None:
                raise RuntimeError(f"no segmentation for frame {number} of seed {seed}: {log.read_text()[-2000:]}")
            trip, msg = answer
            if number >= 10:  # after warm-up
                trips.append(trip)
            hypotheses.append(track_masks(msg, frame.depth.shape))
        runs[seed] = hypotheses
    return {"hypotheses": runs, "trips": trips}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--cache", default="out/shapes_model")
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ["ROS_DOMAIN_ID"] = str(random.randint(100, 200))
    model = shapes_model(args.cache)
    settings = SequenceSettings(frames=args.frames)
    frames_of = {seed: synthetic_sequence(seed, settings) for seed in args.seeds}
    rclpy.init()
    try:
        logs = Path(tempfile.mkdtemp(prefix="node_tracking_"))
        # Off first: the first process pays for the machine's caches warming (weights, imports).
        off = run_node(model.directory, model.threshold, False, frames_of, logs / "off.log")
        on = run_node(model.directory, model.threshold, True, frames_of, logs / "on.log")
    finally:
        rclpy.try_shutdown()
    results = score([(f"seed {seed}", frames_of[seed], on["hypotheses"][seed]) for seed in args.seeds])
    overall = results["OVERALL"]
    print(f"setting 2: the node ({model.directory.name}, threshold {model.threshold}) on {len(args.seeds)} sequences "
          f"x {args.frames} frames (seeds {' '.join(map(str, args.seeds))})")
    print(f"  HOTA {overall['hota']:.3f} (DetA {overall['deta']:.3f}, AssA {overall['assa']:.3f}), "
          f"IDF1 {overall['idf1']:.3f}, ID switches {int(overall['num_switches'])} "
          f"({args.frames * overall['num_switches'] / (args.frames * len(args.seeds)):.1f} per {args.frames} frames), "
          f"MOTA {overall['mota']:.3f}, FP {int(overall['num_false_positives'])}, FN {int(overall['num_misses'])}")
    median_on, median_off = statistics.median(on["trips"]) * 1000, statistics.median(off["trips"]) * 1000
    print(f"  frame round trip, median: tracking on {median_on:.2f} ms, off {median_off:.2f} ms "
          f"({median_on / median_off - 1:+.1%}; target within 5 %); load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
