"""A ~/segment call without an image on an idle camera (nobody listens to its outputs): the camera subscribes
for it through its own subscription, QoS matched to the camera's publishers as for a listener, the call gets
the next frame, and the camera goes back to idle (issue 18: the call used to wait on a best-effort one-shot
subscription of its own, and 5 of 8 such waits on a reliable 640x480 camera ran out under load).
"""

from __future__ import annotations

import threading
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import ReliabilityPolicy
from ros_helpers import RELIABLE, NodeProcess, frame, wait_for_service
from sensor_msgs.msg import Image

from clipseg_ros.srv import Segment

NAME = "clipseg_frame_wait"
TOPIC = "/frame_wait_camera/image"
CALLS = 6
IDLE_S = 5.0  # the camera unsubscribes at its next demand check (0.5 s), the probe hears of it soon after


class Camera:
    """A reliable 640x480 camera at about 10 Hz, stamps counting up; and what the probe sees of the topic."""

    def __init__(self, probe) -> None:
        self.probe = probe
        self.publisher = probe.create_publisher(Image, TOPIC, RELIABLE)
        self.last_stamp = 0  # the stamp of the last frame published
        self.reliabilities: set[ReliabilityPolicy] = set()  # of the node's subscriptions seen on the topic
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._stream), threading.Thread(target=self._watch)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _stream(self) -> None:
        msg = frame(0, 640, 480)
        while not self._stop.is_set():
            msg.header.stamp.sec = self.last_stamp + 1
            self.publisher.publish(msg)
            self.last_stamp += 1
            time.sleep(0.1)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for info in self.probe.get_subscriptions_info_by_topic(TOPIC):
                if info.node_name == NAME:
                    self.reliabilities.add(info.qos_profile.reliability)
            time.sleep(0.01)

    def wait_until_idle(self) -> bool:
        deadline = time.monotonic() + IDLE_S
        while self.probe.count_subscribers(TOPIC) > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


@pytest.fixture(scope="module")
def node(probe, tiny_checkpoint, tmp_path_factory):
    params = {"weights": str(tiny_checkpoint), "device": "cpu", "input_size": "[64, 64]", "prompts": "[cup]"}
    node = NodeProcess(tmp_path_factory.mktemp("frame_wait"), NAME, params, ("-r", f"image:={TOPIC}"))
    try:
        yield node, wait_for_service(probe, node, Segment, f"/{NAME}/segment")
    finally:
        code = node.stop()
    assert code == 0, node.log()


def test_calls_on_an_idle_camera_each_get_its_next_frame(probe, node):
    process, client = node
    camera = Camera(probe)
    diagnostics = probe.inbox(DiagnosticArray, "/diagnostics")
    camera.start()
    try:
        for _ in range(CALLS):
            assert camera.wait_until_idle(), "the camera stayed subscribed with nobody listening"
            before = camera.last_stamp
            response = probe.call(client, Segment.Request(), timeout=10.0)
            assert response.success, f"{response.message}\n{process.log()}"
            # The frame arrived after the call: the camera's next one, not a stale one.
            assert response.header.stamp.sec > before and response.header.frame_id == "test_camera"
            assert (response.masks[0].width, response.masks[0].height) == (640, 480)
        assert camera.wait_until_idle(), "the camera stayed subscribed after the calls"
    finally:
        camera.stop()
    # The wait went through the camera's own subscription, matched to the reliable publisher.
    assert ReliabilityPolicy.RELIABLE in camera.reliabilities, camera.reliabilities

    def idle(msg):
        values = [{kv.key: kv.value for kv in s.values} for s in msg.status if s.name == f"{NAME}: segmentation"]
        return bool(values) and values[0]["subscribed"] == "false"

    assert diagnostics.wait(idle, timeout=5.0, since=len(diagnostics)) is not None


def test_a_call_with_no_frame_coming_is_answered_when_the_wait_runs_out(probe, node):
    process, client = node
    started = time.monotonic()
    response = probe.call(client, Segment.Request(), timeout=10.0)
    took = time.monotonic() - started
    assert not response.success and f"no frame within 2.0 s on {TOPIC}" in response.message, response.message
    assert 1.8 < took < 6.0, took
    deadline = time.monotonic() + IDLE_S
    while probe.count_subscribers(TOPIC) > 0:
        assert time.monotonic() < deadline, "the camera stayed subscribed after the wait ran out"
        time.sleep(0.05)
    assert process.alive()
