"""The segment service without ROS transport: a request in, a response out, on a real tiny model and the real
board. (A call without an image, which waits for a camera frame, runs in test/ros/test_service_frame_wait.py.)"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.logging import get_logger
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from clipseg_ros.engine.segmenter import Segmenter
from clipseg_ros.ros.image_codec import image_to_numpy, numpy_to_image
from clipseg_ros.ros.node import parameters
from clipseg_ros.ros.node.prompt_board import PromptBoard
from clipseg_ros.ros.node.segment_service import NOT_ACTIVE, SHUTTING_DOWN, SegmentService
from clipseg_ros.ros.node.settings import Settings
from clipseg_ros.srv import Segment

HEADER = Header(stamp=Time(sec=42, nanosec=7), frame_id="camera_optical")


class Service:
    def __init__(self, segmenter: Segmenter, prompts: list[str], **changes) -> None:
        defaults = {name: parameters.coerce(name, spec.default) for name, spec in parameters.SPECS.items()}
        board = PromptBoard()
        board.configure(Settings.read({**defaults, "prompts": prompts, **changes}.__getitem__))
        self.active, self.closing = True, threading.Event()
        self.service = SegmentService(
            None, get_logger("segment_service"), board, segmenter, {}, lambda: self.active, self.closing, lambda: None
        )

    def call(self, **fields) -> Segment.Response:
        return asyncio.run(self.service.answer(Segment.Request(**fields), Segment.Response()))


@pytest.fixture
def service(tiny_model):
    return lambda prompts, **changes: Service(Segmenter(tiny_model, device="cpu", input_size=64), prompts, **changes)


def image(width: int = 80, height: int = 60):
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = (250, 240, 30)
    return numpy_to_image(rgb, "rgb8", HEADER)


def test_an_image_is_segmented_with_the_requests_prompts_and_header(service):
    response = service(["cup"]).call(image=image(), prompts=["bottle", "red mug"])
    assert response.success, response.message
    assert response.labels == ["bottle", "red mug"] and response.header == HEADER
    for mask, probability, score in zip(response.masks, response.probabilities, response.scores, strict=True):
        assert (mask.width, mask.height, mask.encoding) == (80, 60, "mono8") and mask.header == HEADER
        assert score == pytest.approx(float(image_to_numpy(probability).max()), abs=1e-6)
    assert response.message == ", ".join(f"{p}: {s:.2f}" for p, s in zip(response.labels, response.scores, strict=True))
    assert not response.has_depth


def test_the_nodes_prompts_and_threshold_unless_the_request_has_its_own(service):
    node = service(["cup"], threshold=0.5)
    default = node.call(image=image())
    assert default.success and default.labels == ["cup"]
    probability = image_to_numpy(default.probabilities[0])
    np.testing.assert_array_equal(image_to_numpy(default.masks[0]) > 0, probability >= 0.5)
    everything = node.call(image=image(), threshold=1e-6)  # every pixel above it
    assert image_to_numpy(everything.masks[0]).min() == 255


def test_depth_in_the_request_gives_the_instances_3d(service):
    depth = numpy_to_image(np.full((60, 80), 0.8, np.float32), "32FC1", HEADER)
    info = CameraInfo(width=80, height=60)
    info.k = [70.0, 0.0, 39.5, 0.0, 70.0, 29.5, 0.0, 0.0, 1.0]
    response = service(["cup"]).call(image=image(), threshold=1e-6, depth=depth, camera_info=info)
    assert response.success, response.message
    assert response.has_depth and response.instances and all(i.has_3d for i in response.instances)
    assert response.instances[0].centroid_3d.z == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"prompts": ["cup"], "image": "yuv"}, "encoding"),
        ({"prompts": [" "], "image": "ok"}, "empty"),
        ({"image": "huge"}, "pixels"),
        ({"image": "ok", "depth": "mono8"}, "depth encoding"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(service, fields, says):
    request = dict(fields)
    bad = image()
    if request["image"] == "yuv":
        bad.encoding = "yuv422"
    elif request["image"] == "huge":
        bad = image(200, 200)
    request["image"] = bad
    if request.get("depth") == "mono8":
        request["depth"] = numpy_to_image(np.zeros((60, 80), np.uint8), "mono8")
        request["camera_info"] = CameraInfo(width=80, height=60)
    response = service(["cup"], max_image_pixels=20_000).call(**request)
    assert not response.success and says in response.message, response.message


def test_no_prompts_anywhere_is_refused(service):
    response = service([]).call(image=image())
    assert not response.success and response.message == "no prompts in the request and none set on the node"


def test_calls_are_refused_while_inactive_and_after_a_signal(service):
    node = service(["cup"])
    node.active = False
    response = node.call(image=image())
    assert not response.success and response.message == NOT_ACTIVE
    node.active = True
    node.closing.set()
    response = node.call(image=image())
    assert not response.success and response.message == SHUTTING_DOWN
    assert node.service.last_answer > 0
