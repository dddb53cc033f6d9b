"""config/fastdds_large_frames.xml: a publisher given it gets a shared-memory segment that holds camera
frames, and a 640x480 rgb8 frame from it reaches a process with default settings intact."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from ros_helpers import RELIABLE
from sensor_msgs.msg import Image

from clipseg_ros.ros.image_codec import image_to_numpy


def _installed_share() -> Path:
    """share/clipseg_ros as installed: found through the ament index (colcon test sets it), else the venv prefix
    (make test installs there without setting AMENT_PREFIX_PATH)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        return Path(get_package_share_directory("clipseg_ros"))
    except (ImportError, PackageNotFoundError, OSError):
        return Path(sys.prefix) / "share" / "clipseg_ros"


PROFILE = _installed_share() / "config" / "fastdds_large_frames.xml"

# A camera-like publisher in its own process: it reports the size of its largest Fast DDS
# shared-memory mapping, then publishes one 640x480 rgb8 frame twice a second until stopped.
PUBLISHER = """
import time
import numpy as np, rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from clipseg_ros.ros.image_codec import numpy_to_image

rclpy.init()
node = Node("large_frame_publisher")
publisher = node.create_publisher(Image, "/large_frames", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
sizes = [0]
for line in open("/proc/self/maps"):
    if "/dev/shm/fastdds_" in line and "port" not in line:
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        sizes.append(end - start)
print(max(sizes), flush=True)
pixels = np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8)
msg = numpy_to_image(pixels, "rgb8")
while True:
    publisher.publish(msg)
    time.sleep(0.5)
"""


def start_publisher(profile: Path | None) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)  # Fast DDS's own defaults, shared memory included (conftest.py)
    if profile is not None:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    process = subprocess.Popen([sys.executable, "-P", "-c", PUBLISHER], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, cwd="/")
    output = []
    for line in process.stdout:  # Fast DDS may log before the size: skip to it, or to the end on failure
        if line.strip().isdigit():
            return process, int(line)
        output.append(line)
    raise AssertionError(f"publisher exited with {process.wait()}:\n{''.join(output)}")


def test_profile_is_installed_with_the_package():
    assert PROFILE.is_file(), f"{PROFILE} missing: run `make setup`"


def test_default_segment_is_too_small_for_a_frame_and_the_profile_fixes_it():
    frame_bytes = 640 * 480 * 3
    default, default_segment = start_publisher(None)
    default.kill()
    large, large_segment = start_publisher(PROFILE)
    large.kill()
    default.wait(), large.wait()
    # Why the profile exists: Fast DDS's default segment cannot hold one frame, so frames go over UDP.
    assert 0 < default_segment < frame_bytes
    assert large_segment >= 16 * 2**20


def test_frame_from_a_publisher_with_the_profile_arrives_intact(probe):
    inbox = probe.inbox(Image, "/large_frames", RELIABLE)
    publisher, _ = start_publisher(PROFILE)
    try:
        deadline = time.monotonic() + 20
        msg = None
        while msg is None and time.monotonic() < deadline:
            msg = inbox.wait(timeout=1.0)
            assert publisher.poll() is None, publisher.stdout.read()
    finally:
        publisher.kill()
        publisher.wait()
    assert msg is not None, "no frame arrived"
    expected = np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_numpy(msg), expected)
