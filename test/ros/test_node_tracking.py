"""Objects over time in the node, across processes (issue 19): track ids, age and velocity on ~/segmentation and
~/markers, the service's ids, exclusion prompts on the topic, the parameter and the service, steady masks.

The tiny random model's masks mean nothing, so the threshold is low enough that every pixel of a prompt is in its
mask: one instance covering the frame. The object moves in depth: a wall 1.0 m away coming 0.1 m nearer the camera
per second of header stamps, so its velocity is known (-0.1 m/s in z) whatever the frames' arrival times. What the
tracker does with many objects crossing is tested on numpy arrays (test_tracking.py) and scored in bench/tracking.py.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile
from ros_helpers import RELIABLE, NodeProcess, frame, same_stamp, wait_for_service
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import Marker, MarkerArray

from clipseg_ros.msg import Segmentation
from clipseg_ros.msg import VisualPrompt as VisualPromptMsg
from clipseg_ros.ros.image_codec import image_to_numpy, numpy_to_image
from clipseg_ros.srv import Segment

NAME = "clipseg_tracking"
WIDTH, HEIGHT = 160, 120
START_M, SPEED_M_S = 1.0, -0.1  # the wall's depth at stamp 100 s, and its velocity in z


def camera_info(seconds: int) -> CameraInfo:
    info = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model="plumb_bob", d=[0.0] * 5)
    info.k = [100.0, 0.0, 80.0, 0.0, 100.0, 60.0, 0.0, 0.0, 1.0]
    info.header = Header(stamp=frame(seconds).header.stamp, frame_id="test_camera")
    return info


def wall(seconds: int) -> Image:
    depth_mm = round(1000 * (START_M + SPEED_M_S * min(seconds - 100, 6)))  # then it stops, 0.4 m away
    pixels = np.full((HEIGHT, WIDTH), depth_mm, np.uint16)
    return numpy_to_image(pixels, "16UC1", Header(stamp=frame(seconds).header.stamp, frame_id="test_camera"))


def other_frame(seconds: int) -> Image:
    """The same scene in other colours: other probabilities from the same model."""
    msg = frame(seconds)
    rgb = 255 - image_to_numpy(msg)
    return numpy_to_image(np.ascontiguousarray(rgb), "rgb8", msg.header)


@pytest.fixture(scope="module")
def graph(probe, tiny_checkpoint, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tracking")
    params = {
        "weights": str(tiny_checkpoint),
        "device": "cpu",
        "input_size": "[64, 64]",
        "prompts": "[cup]",
        "threshold": "0.01",
        "depth.enabled": "true",
        "depth.sync_tolerance_s": "0.9",  # stamps 1 s apart: a busy machine may deliver depth late
        "depth.max_m": "5.0",
    }
    node = NodeProcess(tmp, NAME, params)
    try:
        client = wait_for_service(probe, node, Segment, f"/{NAME}/segment")
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        io = {
            "image": probe.create_publisher(Image, "/image", RELIABLE),
            "camera_info": probe.create_publisher(CameraInfo, "/camera_info", RELIABLE),
            "depth": probe.create_publisher(Image, "/depth/image", RELIABLE),
            "depth_info": probe.create_publisher(CameraInfo, "/depth/camera_info", RELIABLE),
            "prompt": probe.create_publisher(String, f"/{NAME}/prompt", RELIABLE),
            "segmentation": probe.inbox(Segmentation, f"/{NAME}/segmentation"),
            "markers": probe.inbox(MarkerArray, f"/{NAME}/markers"),
            "probability": probe.inbox(Image, f"/{NAME}/probability"),
            "label_info": probe.inbox(String, f"/{NAME}/label_info", latched),
        }
        yield probe, node, client, io
    finally:
        code = node.stop()
    assert code == 0, node.log()


def send(io, seconds: int, image: Image | None = None, inbox: str = "segmentation", timeout: float = 20.0):
    """One frame (with its depth), then its output on `inbox`; resent until it comes (a busy machine may lose one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        io["camera_info"].publish(camera_info(seconds))
        io["depth_info"].publish(camera_info(seconds))
        io["depth"].publish(wall(seconds))
        time.sleep(0.05)  # the depth frame is in the node before its colour frame
        io["image"].publish(image or frame(seconds))
        found = io[inbox].wait(lambda m: same_stamp(m, seconds), timeout=3.0)
        if found is not None:
            return found
    raise AssertionError(f"no {inbox} for the frame stamped {seconds} s")


def test_a_moving_object_keeps_its_id_with_its_age_and_velocity_from_the_stamps(graph):
    _, node, _, io = graph
    frames = [send(io, seconds) for seconds in range(100, 106)]
    assert all(len(f.instances) == 1 and f.instances[0].has_3d for f in frames), node.log()
    tracked = [f.instances[0] for f in frames]
    # Reported from its third frame (tracking.min_hits 3): a blob seen once or twice is not a track.
    assert [i.track_id for i in tracked[:2]] == [0, 0]
    ids = {i.track_id for i in tracked[2:]}
    assert len(ids) == 1 and 0 not in ids
    assert [i.age_frames for i in tracked[2:]] == [2, 3, 4, 5]
    assert [i.age_s for i in tracked[2:]] == pytest.approx([2.0, 3.0, 4.0, 5.0])
    assert all(i.has_velocity for i in tracked[2:])
    velocity = tracked[-1].velocity
    assert (velocity.x, velocity.y, velocity.z) == pytest.approx((0.0, 0.0, SPEED_M_S), abs=0.005)
    markers = io["markers"].wait(lambda m: any(same_stamp(k, 105) for k in m.markers), timeout=5.0)
    assert markers is not None
    texts = [m.text for m in markers.markers if m.type == Marker.TEXT_VIEW_FACING]
    assert texts and texts[0].startswith(f"cup #{tracked[-1].track_id} ")


def test_the_service_gives_the_latest_tracked_frame_its_ids_and_any_other_image_none(graph):
    probe, _, client, io = graph
    last = send(io, 106).instances[0]
    assert last.track_id
    on_latest = probe.call(client, Segment.Request())  # no image: the camera's newest frame, the one just tracked
    assert on_latest.success, on_latest.message
    assert same_stamp(on_latest, 106)
    assert [i.track_id for i in on_latest.instances] == [last.track_id]
    assert on_latest.instances[0].age_frames == last.age_frames
    own_image = probe.call(client, Segment.Request(image=frame(106)))
    assert own_image.success and [i.track_id for i in own_image.instances] == [0]
    assert not own_image.instances[0].has_velocity


def test_an_exclusion_prompt_on_topic_parameter_and_service_removes_its_pixels_and_has_no_label(graph):
    probe, node, client, io = graph
    since = len(io["label_info"])
    io["prompt"].publish(String(data="cup; -hand"))
    info = io["label_info"].wait(lambda m: "hand" in m.data, since=since)
    assert info is not None, node.log()
    info = json.loads(info.data)
    assert info["labels"] == ["background", "cup"] and info["exclusions"] == ["hand"] and len(info["colors"]) == 2
    assert probe.remote_parameter(NAME, "prompts") == ["cup", "-hand"]
    # Every pixel is found by the hand prompt too at this threshold: nothing is left of the cup.
    segmentation = send(io, 150)
    assert segmentation.labels == ["cup"] and not segmentation.instances
    assert image_to_numpy(segmentation.masks[0]).max() == 0

    [refused] = probe.set_remote_parameters(NAME, {"prompts": ["-hand"]})
    assert not refused.successful and "only exclusion prompts (hand)" in refused.reason
    [refused] = probe.set_remote_parameters(NAME, {"prompts": ["cup", "-cup"]})
    assert not refused.successful and "cup is both segmented and excluded" in refused.reason
    [done] = probe.set_remote_parameters(NAME, {"prompts": ["cup"]})
    assert done.successful

    request = Segment.Request(image=frame(151), prompts=["cup", "-hand"])
    answer = probe.call(client, request)
    assert answer.success and list(answer.labels) == ["cup"] and not answer.instances
    assert image_to_numpy(answer.masks[0]).max() == 0
    support = frame(151)
    visual = VisualPromptMsg(image=support, mask=numpy_to_image(np.full((HEIGHT, WIDTH), 255, np.uint8), "mono8",
                                                                 support.header), label="-hand")
    answer = probe.call(client, Segment.Request(image=frame(151), prompts=["cup"], visual_prompts=[visual]))
    assert answer.success and list(answer.labels) == ["cup"] and not answer.instances
    answer = probe.call(client, Segment.Request(image=frame(151), prompts=["-hand"]))
    assert not answer.success and "only exclusion prompts" in answer.message
    assert probe.call(client, Segment.Request(image=frame(151), prompts=["cup"])).instances  # the cup without


def test_steady_masks_average_the_probabilities_over_frames_only_when_enabled(graph):
    probe, _, client, io = graph
    first = probe.call(client, Segment.Request(image=frame(200)))  # the service is never averaged
    second = probe.call(client, Segment.Request(image=other_frame(201)))
    p_first, p_second = (image_to_numpy(r.probabilities[0]) for r in (first, second))
    assert np.abs(p_first - p_second).max() > 1e-3  # two frames the model sees differently

    send(io, 200, inbox="probability")
    off = image_to_numpy(send(io, 201, other_frame(201), inbox="probability"))
    assert np.allclose(off, p_second, atol=1e-4)  # off (the default): each frame as it is

    results = probe.set_remote_parameters(NAME, {"temporal.enabled": True, "temporal.smoothing": 0.3})
    assert all(r.successful for r in results)
    send(io, 210, inbox="probability")  # the first frame since it was turned on starts the average
    on = image_to_numpy(send(io, 211, other_frame(211), inbox="probability"))
    assert np.allclose(on, p_first + 0.3 * (p_second - p_first), atol=1e-4)
    [done] = probe.set_remote_parameters(NAME, {"temporal.enabled": False})
    assert done.successful
