"""Colour/depth pairing by stamp: the rules on plain numbers, then the ROS-facing part on real messages."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from clipseg_ros.perception import Intrinsics, PerceptionSettings, perceive
from clipseg_ros.perception.synthetic_scene import SceneBox, render
from clipseg_ros.ros.image_codec import ImageDecodeError, numpy_to_image
from clipseg_ros.ros.node.depth_sync import DepthSync, StampPairer, depth_from_messages, stamp_ns

COLOUR = Intrinsics(640, 480, 525.0, 525.0, 319.5, 239.5)


def test_the_closest_depth_within_tolerance_pairs():
    pairer = StampPairer(tolerance=0.02)
    for stamp in (1.000, 1.033, 1.066):
        pairer.add_depth(stamp, f"depth@{stamp}")
    assert pairer.match(1.030) == (1.033, "depth@1.033")
    assert pairer.match(1.080) == (1.066, "depth@1.066")
    assert pairer.match(1.0165) == (1.033, "depth@1.033")  # equidistant: the newer one
    assert pairer.match(1.100) is None  # stale: the newest depth is 34 ms older
    assert pairer.match(0.950) is None  # depth not yet arrived for an older frame


def test_out_of_order_arrivals_and_bounded_history():
    pairer = StampPairer(tolerance=0.5, history=3)
    for stamp in (5, 1, 4, 2, 3):
        pairer.add_depth(stamp, stamp)
    assert pairer.match(3.4) == (3, 3)  # kept in stamp order, whatever the arrival order
    assert pairer.match(2) is None  # only the three newest stamps (3, 4, 5) are kept
    assert pairer.match(5.4) == (5, 5)


def test_integer_nanosecond_stamps_pair_by_the_same_rules():
    """What DepthSync gives the pairer: stamps in integer nanoseconds, the tolerance exact at its edge."""
    pairer = StampPairer(tolerance=20_000_000)
    for stamp in (1_000_000_000, 1_033_000_000):
        pairer.add_depth(stamp, f"d{stamp}")
    assert pairer.match(1_013_000_000) == (1_000_000_000, "d1000000000")
    assert pairer.match(1_053_000_000) == (1_033_000_000, "d1033000000")  # exactly the tolerance apart
    assert pairer.match(1_053_000_001) is None
    assert pairer.match(1_016_500_000) == (1_033_000_000, "d1033000000")  # equidistant: the newer one


def _timed_match(pairer: StampPairer, stamp: float, wait_s: float):
    started = time.monotonic()
    pairer.wait_for_partner(stamp, wait_s)
    return pairer.match(stamp), time.monotonic() - started


def test_a_colour_frame_waits_for_its_depth_frame_still_on_its_way():
    pairer = StampPairer(tolerance=0.02, live=1.0)
    pairer.add_depth(0.967, "d0.967")  # the live stream is one frame behind the colour frame at 1.000
    late = threading.Timer(0.2, pairer.add_depth, args=(1.001, "d1.001"))
    late.start()
    found, took = _timed_match(pairer, 1.000, wait_s=10.0)
    late.join()
    assert found == (1.001, "d1.001")
    assert 0.15 < took < 5.0, took  # it waited for the frame, and stopped waiting when it came


@pytest.mark.parametrize(
    ("depth", "why"),
    [
        ((), "no depth stream"),
        ((0.5,), "a stream that stopped: its newest frame is older than `live`"),
        ((0.967, 1.05), "the stream is past the colour frame without a partner: none can come"),
        ((0.99,), "a partner is here (a closer one might come: not waited for)"),
    ],
)
def test_no_wait_when_no_partner_can_come_or_one_is_here(depth, why):
    pairer = StampPairer(tolerance=0.02, live=0.4)
    for stamp in depth:
        pairer.add_depth(stamp, stamp)
    found, took = _timed_match(pairer, 1.000, wait_s=10.0)
    assert took < 2.0, why
    assert found == ((0.99, 0.99) if depth == (0.99,) else None), why


def test_the_wait_is_bounded_when_the_partner_never_comes():
    pairer = StampPairer(tolerance=0.02, live=1.0)
    pairer.add_depth(0.967, "d0.967")
    found, took = _timed_match(pairer, 1.000, wait_s=0.3)
    assert found is None and 0.25 < took < 5.0, took
    never = StampPairer(tolerance=0.02)  # no `live`: never waits, even for a stream behind the colour frame
    never.add_depth(0.967, "d0.967")
    assert _timed_match(never, 1.000, wait_s=10.0) == (None, pytest.approx(0.0, abs=2.0))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="tolerance"):
        StampPairer(tolerance=-1)
    with pytest.raises(ValueError, match="history"):
        StampPairer(tolerance=1, history=0)
    with pytest.raises(ValueError, match="tolerance"):
        DepthSync(tolerance_s=0)


# -- the ROS-facing part -----------------------------------------------------------------------------------


def header_at(seconds: float, frame_id: str = "camera_color_optical_frame") -> Header:
    ns = round(seconds * 1e9)
    return Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=frame_id)


def camera_info(intrinsics: Intrinsics) -> CameraInfo:
    msg = CameraInfo(width=intrinsics.width, height=intrinsics.height)
    msg.k = [intrinsics.fx, 0.0, intrinsics.cx, 0.0, intrinsics.fy, intrinsics.cy, 0.0, 0.0, 1.0]
    return msg


def test_stamps_in_nanoseconds():
    assert stamp_ns(Header(stamp=Time(sec=3, nanosec=5))) == 3_000_000_005
    assert stamp_ns(header_at(1700000000.123456789)) == 1_700_000_000_123_456_768  # float rounding


def test_depth_sync_pairs_real_messages_and_feeds_3d():
    depth_camera = COLOUR.scaled_to(320, 240)
    scene = render(COLOUR, 1.0, [SceneBox((0.15, 0.35), (0.10, 0.25), 0.12)])
    depth_mm = np.rint(render(depth_camera, 1.0, [SceneBox((0.15, 0.35), (0.10, 0.25), 0.12)]).depth * 1000)
    sync = DepthSync(tolerance_s=0.02)
    for t in (10.000, 10.033):
        sync.add_depth(numpy_to_image(depth_mm.astype(np.uint16), "16UC1", header_at(t, "camera_depth_optical_frame")))

    assert sync.match(header_at(10.030)) is None  # no depth camera_info yet: no 3D rather than a guess
    sync.set_camera_info(camera_info(depth_camera))
    depth = sync.match(header_at(10.030))
    assert depth.encoding == "16UC1" and depth.intrinsics == depth_camera
    assert depth.image.shape == (240, 320) and depth.image.dtype == np.uint16
    assert sync.match(header_at(10.080)) is None  # stale: 47 ms after the newest depth frame

    probabilities = np.where(scene.mask(1), 0.9, 0.1).astype(np.float32)[None]
    result = perceive(probabilities, probabilities >= 0.5, ["box"], PerceptionSettings(), depth, COLOUR)
    (instance,) = result.instances
    assert instance.has_3d
    assert instance.box3d.centroid[2] == pytest.approx(0.88, abs=0.01)

    stale = perceive(probabilities, probabilities >= 0.5, ["box"], PerceptionSettings(), sync.match(header_at(11.0)))
    assert len(stale.instances) == 1 and not stale.instances[0].has_3d and not stale.has_depth


def test_bad_depth_messages_are_refused_with_the_reason():
    info = camera_info(COLOUR)
    with pytest.raises(ValueError, match="depth encoding 'mono8'"):
        depth_from_messages(numpy_to_image(np.zeros((480, 640), np.uint8), "mono8"), info)
    with pytest.raises(ValueError, match="camera_info is 640x480"):
        depth_from_messages(numpy_to_image(np.zeros((240, 320), np.float32), "32FC1"), info)
    uncalibrated = CameraInfo(width=640, height=480)
    with pytest.raises(ValueError, match="not calibrated"):
        depth_from_messages(numpy_to_image(np.zeros((480, 640), np.float32), "32FC1"), uncalibrated)
    truncated = numpy_to_image(np.zeros((480, 640), np.uint16), "16UC1")
    truncated.data = truncated.data[:100]
    with pytest.raises(ImageDecodeError, match="data holds 100 bytes"):
        depth_from_messages(truncated, info)
