"""The grasp client of docs/outputs.md, run as installed, on Segmentation messages of a scene with known cups."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from clipseg_ros.engine.segmenter import SegmentationResult
from clipseg_ros.msg import Instance, Segmentation
from clipseg_ros.perception import DepthInput, Intrinsics, PerceptionSettings, perceive
from clipseg_ros.perception.synthetic_scene import SceneBox, render
from clipseg_ros.ros.demo.grasp_client_example import TrackFollower, best_instance
from clipseg_ros.ros.messages import segmentation_message

CAMERA = Intrinsics(640, 480, 525.0, 525.0, 319.5, 239.5)
HEADER = Header(stamp=Time(sec=42, nanosec=5), frame_id="camera_color_optical_frame")


def cups_message() -> Segmentation:
    """Two cups (the second one likelier) and a bowl; the likeliest cup has no depth, so no 3D."""
    boxes = [SceneBox((0.15, 0.25), (0.10, 0.20), 0.10), SceneBox((-0.30, -0.20), (-0.25, -0.15), 0.10),
             SceneBox((-0.05, 0.05), (-0.05, 0.05), 0.08), SceneBox((0.20, 0.30), (-0.30, -0.20), 0.10)]
    scene = render(CAMERA, 1.0, boxes)
    cup = np.select([scene.mask(1), scene.mask(2), scene.mask(4)], [0.7, 0.8, 0.95], 0.1)
    bowl = np.where(scene.mask(3), 0.99, 0.1)
    result = SegmentationResult(["bowl", "cup"], np.stack([bowl, cup]).astype(np.float32), 0.5)
    depth = scene.depth.copy()
    depth[scene.mask(4)] = 0  # no depth return from the likeliest cup
    perception = perceive(result.probabilities, result.masks, result.labels, PerceptionSettings(),
                          DepthInput(depth, "32FC1", CAMERA), CAMERA)
    return segmentation_message(HEADER, result, perception)


def test_best_instance_is_the_likeliest_with_3d():
    msg = cups_message()
    best = best_instance(msg, "cup")
    assert best.label == "cup" and best.has_3d and best.score_max == pytest.approx(0.8)
    assert best.centroid_3d.x == pytest.approx(-0.25, abs=0.01) and best.centroid_3d.z == pytest.approx(0.9, abs=0.01)
    assert best_instance(msg, "stairs") is None
    no_3d = Segmentation(instances=[i for i in msg.instances if not i.has_3d])
    assert best_instance(no_3d, "cup") is None


def tracked_cups(*cups: tuple[int, float]) -> Segmentation:
    """A message with one located cup per (track id, score)."""
    return Segmentation(instances=[Instance(label="cup", has_3d=True, track_id=i, score_max=s) for i, s in cups])


def test_the_follower_keeps_to_one_track_until_it_has_ended():
    follower = TrackFollower("cup", lost_after=2)
    assert follower.target(tracked_cups((0, 0.9))).track_id == 0  # no track reported yet: the likeliest
    assert follower.target(tracked_cups((5, 0.8), (6, 0.6))).track_id == 5
    assert follower.target(tracked_cups((5, 0.5), (6, 0.95))).track_id == 5  # another cup likelier: still 5
    assert follower.target(tracked_cups((6, 0.95))) is None  # 5 hidden for a moment
    assert follower.target(tracked_cups((6, 0.95))) is None
    assert follower.target(tracked_cups((6, 0.95), (7, 0.99))).track_id == 7  # 5 has ended: pick again


def test_installed_client_prints_the_cup_centroid(tmp_path: Path):
    client = Path(sys.prefix) / "lib" / "clipseg_ros" / "grasp_client_example"
    assert client.exists(), "run `make setup`: the client is installed beside the nodes"
    topic = f"/grasp_test_{os.getpid()}/segmentation"
    process = subprocess.Popen([str(client), "--ros-args", "-p", "once:=true", "-r", f"segmentation:={topic}"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("grasp_test_publisher", context=context)
    try:
        publisher = node.create_publisher(Segmentation, topic, 1)
        msg = cups_message()
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            publisher.publish(msg)
            time.sleep(0.2)
        assert process.poll() == 0, "the client did not report a cup within 30 s"
        output = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        node.destroy_node()
        rclpy.shutdown(context=context)
    best = best_instance(msg, "cup")
    c = best.centroid_3d
    assert f"cup: x={c.x:.3f} y={c.y:.3f} z={c.z:.3f} m in camera_color_optical_frame" in output
    assert "untracked, score 0.80" in output and "stamp 42.000000005" in output
