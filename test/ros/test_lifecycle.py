"""The node as a managed (lifecycle) node, several cameras on one model, compute only for listeners (issue 10).

Each test drives a real node process through its lifecycle services, as a lifecycle manager would.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from ros_helpers import RELIABLE, Inbox, NodeProcess, NodeRuns, Probe, frame, memory_mib, same_stamp, wait_for_service
from sensor_msgs.msg import Image

from clipseg_ros.engine.checkpoints import save_hf
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig
from clipseg_ros.engine.model.config import TextConfig, VisionConfig
from clipseg_ros.srv import Segment


@pytest.fixture(scope="module")
def medium_checkpoint(tmp_path_factory):
    """About 240 MB of weights: well above what the first inference leaves allocated for good."""
    config = ClipSegConfig.tiny().with_changes(
        vision=VisionConfig(width=768, layers=8, heads=12, mlp_dim=3072, patch_size=16, image_size=64),
        text=TextConfig(width=256, layers=2, heads=4, mlp_dim=512),
    )
    torch.manual_seed(0)
    model = ClipSeg(config).eval()
    size_mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    return save_hf(model, tmp_path_factory.mktemp("medium")), size_mib


class Lifecycle:
    def __init__(self, probe: Probe, name: str) -> None:
        self.probe, self.name = probe, name
        self._change = probe.create_client(ChangeState, f"/{name}/change_state")
        self._get = probe.create_client(GetState, f"/{name}/get_state")

    def state(self) -> int:
        return self.probe.call(self._get, GetState.Request()).current_state.id

    def transition(self, transition: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition))
        return self.probe.call(self._change, request, timeout=120.0).success


def _wait_for_lifecycle(probe: Probe, node: NodeProcess) -> Lifecycle:
    client = probe.create_client(GetState, f"/{node.name}/get_state")
    deadline = time.monotonic() + 120
    while not client.wait_for_service(timeout_sec=0.5):
        assert node.alive() and time.monotonic() < deadline, node.log()
    return Lifecycle(probe, node.name)


@pytest.fixture(scope="module")
def nodes(medium_checkpoint, tiny_checkpoint):
    """Both tests' nodes, started at once; each test ends its own."""
    checkpoint, _ = medium_checkpoint
    # fp32: weights_mib is their fp32 size (precision auto would hold them in bf16, half of it, on an AMX CPU)
    managed = {"weights": str(checkpoint), "device": "cpu", "precision": "fp32", "input_size": "[64, 64]",
               "prompts": "[cup]", "autostart": "false"}
    multi = {
        "weights": str(tiny_checkpoint),
        "device": "cpu",
        "input_size": "[64, 64]",
        "prompts": "[cup]",
        "cameras": "[front, left]",
        # Both cameras' frames in one batch through ONNX Runtime: its dynamic image count, wired to the node.
        "backend": "onnxruntime",
    }
    runs = NodeRuns()
    runs.start_node("clipseg_managed", managed)
    runs.start_node("clipseg_multi", multi)
    yield runs
    runs.stop()


def test_transitions_release_memory_and_gate_output(probe, medium_checkpoint, nodes):
    _, weights_mib = medium_checkpoint
    node = nodes["clipseg_managed"]
    try:
        lifecycle = _wait_for_lifecycle(probe, node)
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
        rss_unconfigured = memory_mib(node.process.pid)
        assert not probe.create_client(Segment, "/clipseg_managed/segment").wait_for_service(timeout_sec=1.0)

        assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE
        rss_configured = memory_mib(node.process.pid)
        assert rss_configured - rss_unconfigured > 0.5 * weights_mib, (rss_unconfigured, rss_configured)

        image = probe.create_publisher(Image, "/image", RELIABLE)
        mask = probe.inbox(Image, "/clipseg_managed/mask")
        time.sleep(1.5)
        # Inactive: listeners or not, the camera is not subscribed and nothing is computed.
        assert probe.count_subscribers("/image") == 0
        for seconds in range(1, 6):
            image.publish(frame(seconds))
            time.sleep(0.05)
        time.sleep(1.0)
        assert len(mask) == 0
        client = wait_for_service(probe, node, Segment, "/clipseg_managed/segment")
        response = probe.call(client, Segment.Request(image=frame(1), prompts=["cup"]))
        assert not response.success and "not active" in response.message

        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
        assert _send(image, mask, 10) is not None, node.log()
        assert probe.call(client, Segment.Request(image=frame(1), prompts=["cup"])).success

        assert lifecycle.transition(Transition.TRANSITION_DEACTIVATE)
        deadline = time.monotonic() + 5
        while probe.count_subscribers("/image") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert probe.count_subscribers("/image") == 0
        count = len(mask)
        for seconds in range(20, 25):
            image.publish(frame(seconds))
            time.sleep(0.05)
        time.sleep(1.0)
        assert len(mask) == count, "output while inactive"

        assert lifecycle.transition(Transition.TRANSITION_CLEANUP)
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
        rss_cleaned = memory_mib(node.process.pid)
        assert rss_configured - rss_cleaned > 0.5 * weights_mib, (rss_configured, rss_cleaned)

        # And back: configure + activate give output again.
        assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
        assert _send(image, mask, 30) is not None, node.log()
        assert lifecycle.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert lifecycle.state() == State.PRIMARY_STATE_FINALIZED
    finally:
        code = node.stop()
    assert code == 0, node.log()
    print(f"RSS MiB: unconfigured {rss_unconfigured:.0f}, configured {rss_configured:.0f}, cleaned {rss_cleaned:.0f}")


def _send(publisher, inbox, seconds: int, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.publish(frame(seconds))
        found = inbox.wait(lambda m: same_stamp(m, seconds), timeout=0.5)
        if found is not None:
            return found
    return None


def test_several_cameras_one_model_and_only_for_listeners(probe, nodes):
    node = nodes["clipseg_multi"]
    try:
        client = wait_for_service(probe, node, Segment, "/clipseg_multi/segment")
        # One node in the graph: the service lives on the segment node itself.
        deadline = time.monotonic() + 10
        while "clipseg_multi" not in (names := {n for n, _ in probe.get_node_names_and_namespaces()}):
            assert time.monotonic() < deadline, names
            time.sleep(0.1)
        assert not any(n.startswith("clipseg_multi_") for n in names), names
        front = probe.create_publisher(Image, "/front/image", RELIABLE)
        left = probe.create_publisher(Image, "/left/image", RELIABLE)
        diagnostics = probe.inbox(DiagnosticArray, "/diagnostics")
        time.sleep(1.5)
        # Nobody listens: no camera is subscribed, no frame is decoded or segmented.
        assert probe.count_subscribers("/front/image") == probe.count_subscribers("/left/image") == 0

        front_mask = probe.inbox(Image, "/clipseg_multi/front/mask")
        assert _send(front, front_mask, 5) is not None, node.log()
        assert probe.count_subscribers("/left/image") == 0, "left subscribed with no listener of its own"
        left_mask = Inbox()
        left_subscription = probe.create_subscription(Image, "/clipseg_multi/left/mask", left_mask, RELIABLE)

        # Both streaming at once: each gets its outputs with its own header.
        for seconds in range(100, 140):
            front.publish(frame(seconds, frame_id="front_optical"))
            left.publish(frame(seconds, width=96, height=72, frame_id="left_optical"))
            time.sleep(0.05)
        time.sleep(1.0)
        fronts = [m for m in front_mask.messages if 100 <= m.header.stamp.sec < 140]
        lefts = [m for m in left_mask.messages if 100 <= m.header.stamp.sec < 140]
        assert len(fronts) >= 10 and len(lefts) >= 10, (len(fronts), len(lefts))
        assert {(m.header.frame_id, m.width) for m in fronts} == {("front_optical", 160)}
        assert {(m.header.frame_id, m.width) for m in lefts} == {("left_optical", 96)}

        def per_camera(msg):
            return {s.name: {kv.key: kv.value for kv in s.values} for s in msg.status}

        latest = diagnostics.wait(
            lambda m: "clipseg_multi: left segmentation" in per_camera(m), timeout=5.0, since=len(diagnostics)
        )
        assert latest is not None
        status = per_camera(latest)
        assert status["clipseg_multi: front segmentation"]["input_topic"] == "/front/image"
        assert int(status["clipseg_multi: left segmentation"]["frames_processed"]) >= 10

        # The service takes the named camera's latest frame.
        response = probe.call(client, Segment.Request(camera="left"))
        assert response.success and response.header.frame_id == "left_optical", response.message
        response = probe.call(client, Segment.Request(camera="rear"))
        assert not response.success and "front, left" in response.message

        # The last listener leaves: the camera unsubscribes and stops working.
        probe.destroy_subscription(left_subscription)
        deadline = time.monotonic() + 5
        while probe.count_subscribers("/left/image") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert probe.count_subscribers("/left/image") == 0
        assert probe.count_subscribers("/front/image") == 1
        # A service call for the idle camera still gets a frame: the node asks the camera for its next one.
        stop = time.monotonic() + 3

        def keep_publishing():
            while time.monotonic() < stop:
                left.publish(frame(200, width=96, height=72, frame_id="left_optical"))
                time.sleep(0.05)

        publisher = threading.Thread(target=keep_publishing)
        publisher.start()
        try:
            response = probe.call(client, Segment.Request(camera="left"))
        finally:
            publisher.join()
        assert response.success and response.header.stamp.sec == 200, response.message
    finally:
        code = node.stop()
    assert code == 0, node.log()
