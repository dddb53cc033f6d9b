"""The segment node in its own process, driven over real ROS 2 topics, services and parameters.

Two node processes share the module: `clipseg` on raw images and `clipseg_compressed` on
image/compressed; both load a tiny random checkpoint made by the tests (no network).
"""

from __future__ import annotations

import itertools
import json
import threading
import time

import cv2
import numpy as np
import pytest
import rclpy
import tiny_clipseg
from diagnostic_msgs.msg import DiagnosticArray
from ros_helpers import LATCHED, RELIABLE, NodeProcess, NodeRuns, Probe, frame, same_stamp, wait_for_service
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String

from clipseg_ros.msg import VisualPrompt
from clipseg_ros.ros.image_codec import image_to_numpy, numpy_to_image
from clipseg_ros.srv import Segment

OUTPUTS = {"mask": "mono8", "probability": "32FC1", "label": "mono8", "overlay": "rgb8"}
STARTUP_S = 120.0  # two processes importing torch at once on a 2-core machine
_stamps = itertools.count(100)


def next_stamp() -> int:
    """A stamp no earlier test used: outputs are matched to their frame by it."""
    return next(_stamps)


class Graph:
    def __init__(self, probe: Probe, raw: NodeProcess, compressed: NodeProcess) -> None:
        self.probe, self.raw, self.compressed = probe, raw, compressed
        self.image = probe.create_publisher(Image, "/image", RELIABLE)
        self.jpeg = probe.create_publisher(CompressedImage, "/image/compressed", RELIABLE)
        self.camera_info = probe.create_publisher(CameraInfo, "/camera_info", RELIABLE)
        self.prompt = probe.create_publisher(String, "/clipseg/prompt", RELIABLE)
        self.visual_prompt = probe.create_publisher(VisualPrompt, "/clipseg/visual_prompt", RELIABLE)
        self.out = {name: probe.inbox(Image, f"/clipseg/{name}") for name in OUTPUTS}
        self.out_camera_info = probe.inbox(CameraInfo, "/clipseg/camera_info")
        self.label_info = probe.inbox(String, "/clipseg/label_info", LATCHED)
        self.compressed_mask = probe.inbox(Image, "/clipseg_compressed/mask")
        self.diagnostics = probe.inbox(DiagnosticArray, "/diagnostics")
        self.segment = probe.create_client(Segment, "/clipseg/segment")

    def send(self, msg, publisher=None, inbox=None, timeout: float = 20.0):
        """Publish a frame until its output (same stamp) arrives; the output, or None."""
        publisher = self.image if publisher is None else publisher
        inbox = self.out["mask"] if inbox is None else inbox
        seconds = msg.header.stamp.sec
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            publisher.publish(msg)
            found = inbox.wait(lambda m: same_stamp(m, seconds), timeout=1.0)
            if found is not None:
                return found
        return None

    def labels(self, since: int = 0, predicate=lambda labels: True, timeout: float = 10.0) -> list[str] | None:
        msg = self.label_info.wait(lambda m: predicate(json.loads(m.data)["labels"][1:]), timeout, since)
        return None if msg is None else json.loads(msg.data)["labels"][1:]

    def diagnostic_values(self, node: str = "clipseg", predicate=lambda values: True) -> dict[str, str] | None:
        def match(msg):
            return any(s.name == f"{node}: segmentation" and predicate(_values(s)) for s in msg.status)

        msg = self.diagnostics.wait(match, timeout=10.0, since=len(self.diagnostics))
        if msg is None:
            return None
        return next(_values(s) for s in msg.status if s.name == f"{node}: segmentation")

    def set_prompts(self, text: str) -> list[str]:
        since = len(self.label_info)
        self.prompt.publish(String(data=text))
        expected = [p.strip() for p in text.split(";") if p.strip()]
        labels = self.labels(since, lambda labels: labels == expected)
        assert labels == expected, f"label_info never showed {expected}"
        return labels


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


@pytest.fixture(scope="module")
def graph(tiny_checkpoint, tmp_path_factory, request):
    failed_before = request.session.testsfailed
    tmp = tmp_path_factory.mktemp("nodes")
    params = {"weights": str(tiny_checkpoint), "device": "cpu", "input_size": "[64, 64]", "prompts": "[cup]"}
    raw = NodeProcess(tmp, "clipseg", params)
    # input_size 512 in fp32: about 30 ms a frame here, many times the time to publish a burst of 15 frames.
    slow = {"image_transport": "compressed", "input_size": "[512, 512]", "precision": "fp32"}
    compressed = NodeProcess(tmp, "clipseg_compressed", {**params, **slow})
    rclpy.init()
    probe = Probe()
    try:
        graph = Graph(probe, raw, compressed)
        for node in (raw, compressed):
            client = probe.create_client(Segment, f"/{node.name}/segment")
            deadline = time.monotonic() + STARTUP_S
            while not client.wait_for_service(timeout_sec=0.5):
                assert node.alive(), f"{node.name} exited:\n{node.log()}"
                assert time.monotonic() < deadline, f"{node.name} not up:\n{node.log()}"
        probe.wait_for_subscribers(graph.prompt)
        yield graph
    finally:
        probe.close()
        rclpy.shutdown()
        codes = {node.name: node.stop() for node in (raw, compressed)}
    assert codes == {"clipseg": 0, "clipseg_compressed": 0}, raw.log() + compressed.log()
    # The nodes' own account of a module where a test failed (the tests' messages seldom carry it).
    assert request.session.testsfailed == failed_before, raw.log() + compressed.log()


@pytest.fixture
def cup(graph):
    """Each test starts from the one prompt `cup` and leaves it so."""
    graph.set_prompts("cup")
    yield
    graph.set_prompts("cup")


def test_frame_gives_every_output_with_its_header_and_size(graph, cup):
    seconds = next_stamp()
    msg = frame(seconds, width=200, height=150, frame_id="camera_optical")
    assert graph.send(msg) is not None, graph.raw.log()
    for name, encoding in OUTPUTS.items():
        out = graph.out[name].wait(lambda m: same_stamp(m, seconds), timeout=5.0)
        assert out is not None, f"no {name}"
        assert (out.encoding, out.width, out.height, out.header.frame_id) == (encoding, 200, 150, "camera_optical")
        assert out.header.stamp == msg.header.stamp
    mask = image_to_numpy(graph.out["mask"].wait(lambda m: same_stamp(m, seconds)))
    assert set(np.unique(mask)) <= {0, 255}
    probability = image_to_numpy(graph.out["probability"].wait(lambda m: same_stamp(m, seconds)))
    assert probability.dtype == np.float32 and 0.0 <= probability.min() <= probability.max() <= 1.0
    labels = image_to_numpy(graph.out["label"].wait(lambda m: same_stamp(m, seconds)))
    assert labels.max() <= 1
    # mask = where a prompt is above threshold, as the label image says
    np.testing.assert_array_equal(mask > 0, labels > 0)


def test_prompt_topic_changes_the_output(graph, cup):
    assert graph.set_prompts("cup; red mug") == ["cup", "red mug"]
    assert graph.probe.remote_parameter("/clipseg", "prompts") == ["cup", "red mug"]
    seconds = next_stamp()
    assert graph.send(frame(seconds), inbox=graph.out["label"]) is not None
    probability = graph.out["probability"].wait(lambda m: same_stamp(m, seconds))
    before = image_to_numpy(probability).copy()
    # The maximum over prompts can only grow with a second prompt; a random model makes it differ somewhere.
    graph.set_prompts("red mug")
    seconds = next_stamp()
    assert graph.send(frame(seconds), inbox=graph.out["probability"]) is not None
    after = image_to_numpy(graph.out["probability"].wait(lambda m: same_stamp(m, seconds)))
    assert not np.array_equal(before, after)


def test_empty_prompt_pauses_output(graph, cup):
    since = len(graph.label_info)
    graph.prompt.publish(String(data=""))
    assert graph.labels(since, lambda labels: labels == []) == []
    seconds = next_stamp()
    assert graph.send(frame(seconds), timeout=2.0) is None
    values = graph.diagnostic_values(predicate=lambda v: v["prompts"] == "0")
    assert values is not None


def test_runtime_parameters_are_validated(graph, cup):
    since = len(graph.label_info)
    [ok] = graph.probe.set_remote_parameters("/clipseg", {"prompts": ["bottle", "cup"]})
    assert ok.successful
    assert graph.labels(since, lambda labels: labels == ["bottle", "cup"]) == ["bottle", "cup"]
    seconds = next_stamp()
    labels = graph.send(frame(seconds), inbox=graph.out["label"])
    assert labels is not None and image_to_numpy(labels).max() <= 2

    for name, bad, reason in [
        ("prompts", ["cup", "  "], "empty"),
        ("threshold", 1.5, "threshold"),
        ("overlay.alpha", -0.1, "alpha"),
        ("max_rate_hz", -1.0, "max_rate_hz"),
        ("threshold", "high", "must be a number"),
        ("overlay.enabled", 1, "true or false"),
        ("prompts", [1, 2], "list of strings"),
        ("weights", "/elsewhere", "read-only"),
    ]:
        before = graph.probe.remote_parameter("/clipseg", name)
        [result] = graph.probe.set_remote_parameters("/clipseg", {name: bad})
        assert not result.successful, name
        assert reason in result.reason, result.reason
        assert graph.probe.remote_parameter("/clipseg", name) == before

    [ok] = graph.probe.set_remote_parameters("/clipseg", {"threshold": 0.3})
    assert ok.successful
    # ROS users write integers for floats: accepted, and read back as floats.
    [ok] = graph.probe.set_remote_parameters("/clipseg", {"max_rate_hz": 100})
    assert ok.successful, ok.reason
    assert graph.probe.set_remote_parameters("/clipseg", {"max_rate_hz": 0.0})[0].successful
    assert graph.probe.set_remote_parameters("/clipseg", {"threshold": 0.5})[0].successful


def test_service_answers_while_streaming(graph, cup):
    # A publisher and a client of this test's own, destroyed after it. In three of six full CI runs here, no
    # frame or image-carrying call from the module's shared writers reached the node after this test (prompts and
    # a small frame still did) and every later test of the module failed; why is not known.
    stream_to = graph.probe.create_publisher(Image, "/image", RELIABLE)
    segment = wait_for_service(graph.probe, graph.raw, Segment, "/clipseg/segment")
    graph.probe.wait_for_subscribers(stream_to)
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            stream_to.publish(frame(next_stamp()))
            time.sleep(0.05)

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        image = frame(0, width=96, height=80, frame_id="request_frame")
        image.header.stamp.sec = 7
        for _ in range(3):
            response = graph.probe.call(segment, Segment.Request(image=image, prompts=["cup", "red mug"]))
            assert response.success, response.message
            assert response.labels == ["cup", "red mug"]
            assert response.header.frame_id == "request_frame" and response.header.stamp.sec == 7
            assert len(response.masks) == len(response.probabilities) == len(response.scores) == 2
            for mask, probability, score in zip(response.masks, response.probabilities, response.scores, strict=True):
                assert (mask.encoding, mask.width, mask.height) == ("mono8", 96, 80)
                assert (probability.encoding, probability.width, probability.height) == ("32FC1", 96, 80)
                assert score == pytest.approx(float(image_to_numpy(probability).max()), abs=1e-6)
        # No image: the latest camera frame, and its header. No prompts: the node's own.
        response = graph.probe.call(segment, Segment.Request())
        assert response.success, response.message
        assert response.labels == ["cup"] and response.header.frame_id == "test_camera"
        assert (response.masks[0].width, response.masks[0].height) == (160, 120)
    finally:
        stop.set()
        streamer.join()
        graph.probe.destroy_publisher(stream_to)
        graph.probe.destroy_client(segment)
    since = len(graph.out["mask"])
    assert graph.out["mask"].wait(since=since - 1) is not None  # the stream was served too


def test_service_refuses_bad_requests_with_a_reason(graph, cup):
    bad_image = frame(0)
    bad_image.encoding = "yuv422"
    response = graph.probe.call(graph.segment, Segment.Request(image=bad_image, prompts=["cup"]))
    assert not response.success and "encoding" in response.message
    rgb = np.full((20, 20, 3), 200, np.uint8)
    small_mask = numpy_to_image(np.ones((10, 10), np.uint8), "mono8")
    mismatched = VisualPrompt(image=numpy_to_image(rgb, "rgb8"), mask=small_mask)
    response = graph.probe.call(graph.segment, Segment.Request(image=frame(0), visual_prompts=[mismatched]))
    assert not response.success and "mask" in response.message
    response = graph.probe.call(graph.segment, Segment.Request(image=frame(0), prompts=[" "]))
    assert not response.success and "empty" in response.message


def test_camera_info_is_republished_with_the_frame_header(graph, cup):
    info = CameraInfo(width=160, height=120, distortion_model="plumb_bob", d=[0.0] * 5)
    info.k = [100.0, 0.0, 80.0, 0.0, 100.0, 60.0, 0.0, 0.0, 1.0]
    info.header = Header(stamp=frame(0).header.stamp, frame_id="test_camera")
    graph.probe.wait_for_subscribers(graph.camera_info)
    graph.camera_info.publish(info)
    time.sleep(0.3)
    seconds = next_stamp()
    out = graph.send(frame(seconds), inbox=graph.out_camera_info)
    assert out is not None
    assert out.header.frame_id == "test_camera" and (out.width, out.height) == (160, 120)
    assert list(out.k) == list(info.k)


def test_diagnostics_are_published(graph, cup):
    graph.send(frame(next_stamp()))
    values = graph.diagnostic_values(predicate=lambda v: int(v["frames_processed"]) > 0)
    assert values is not None
    for key in ("input_rate_hz", "output_rate_hz", "inference_ms_mean", "latency_ms_mean", "frames_dropped"):
        assert key in values
    assert values["device"] == "cpu" and values["model"].endswith("tiny_checkpoint0")
    assert 0.0 <= float(values["cache_hit_rate"]) <= 1.0


def test_latest_frame_only_under_the_rate_limit(graph, cup):
    """A burst while the worker waits out max_rate_hz: no backlog, the last frame is segmented, the rest dropped."""
    assert graph.probe.set_remote_parameters("/clipseg", {"max_rate_hz": 2.0})[0].successful  # 0.5 s per frame
    try:
        before = graph.diagnostic_values()
        burst = [next_stamp() for _ in range(20)]
        graph.send(frame(burst[0]))  # the worker is now inside its 0.5 s
        for seconds in burst[1:]:
            graph.image.publish(frame(seconds))
            time.sleep(0.01)
        last = graph.out["mask"].wait(lambda m: same_stamp(m, burst[-1]), timeout=5.0)
        assert last is not None, "the newest frame was not segmented"
        time.sleep(1.0)  # a backlog would still be coming out now
        stamps = [m.header.stamp.sec for m in graph.out["mask"].messages if m.header.stamp.sec in burst]
        assert stamps[-1] == burst[-1]
        assert stamps == sorted(stamps)
        assert len(stamps) <= 4, stamps
        after = graph.diagnostic_values()
        assert int(after["frames_dropped"]) > int(before["frames_dropped"])
    finally:
        assert graph.probe.set_remote_parameters("/clipseg", {"max_rate_hz": 0.0})[0].successful


def test_latest_frame_only_while_inference_is_slow(graph):
    """The same on the slow node with no rate limit: the burst arrives while the model itself is busy."""
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(image_to_numpy(frame(0)), cv2.COLOR_RGB2BGR))[1].tobytes()
    before = graph.diagnostic_values("clipseg_compressed")
    burst = [next_stamp() for _ in range(15)]
    assert graph.send(_compressed(burst[0], jpeg, "jpeg"), graph.jpeg, graph.compressed_mask) is not None
    started = time.monotonic()
    for seconds in burst[1:]:  # back to back: the burst is over long before the model is
        graph.jpeg.publish(_compressed(seconds, jpeg, "jpeg"))
    burst_s = time.monotonic() - started
    assert graph.compressed_mask.wait(lambda m: same_stamp(m, burst[-1]), timeout=10.0) is not None
    time.sleep(1.0)
    stamps = [m.header.stamp.sec for m in graph.compressed_mask.messages if m.header.stamp.sec in burst]
    assert stamps[-1] == burst[-1] and stamps == sorted(stamps)
    # A frame can start only when the model is free: the first one, one per inference time while the burst
    # lasts, and the newest. A queue behind the model would segment all 15. The bound comes from the node's own
    # inference time, so a faster machine (or precision) does not make a correct node fail.
    after = graph.diagnostic_values("clipseg_compressed")
    inference_s = float(after["inference_ms_mean"]) / 1000.0
    can_start = 2 + int(burst_s / inference_s) + 1
    assert len(stamps) <= min(can_start, len(burst) // 2), (stamps, burst_s, inference_s)
    # Thinned in the mailbox or already by DDS (keep-last 1 input QoS, when the node's threads are starved on
    # 2 cores): either way no backlog is processed.
    assert int(after["frames_processed"]) - int(before["frames_processed"]) <= len(stamps)


def _bad_frames():
    unsupported = frame(0)
    unsupported.encoding = "yuv422_yuy2"
    zero = frame(0)
    zero.width = zero.height = 0
    huge = frame(0)
    huge.width = huge.height = 100_000
    short_step = frame(0)
    short_step.step = 10
    short_data = frame(0)
    short_data.data = short_data.data[:1000]
    return {"unsupported": unsupported, "zero": zero, "huge": huge, "short_step": short_step, "short_data": short_data}


@pytest.mark.parametrize("kind", list(_bad_frames()))
def test_bad_frame_then_good_frame(graph, cup, kind):
    before = int(graph.diagnostic_values()["frames_rejected"])
    bad = _bad_frames()[kind]
    bad.header.stamp.sec = next_stamp()
    graph.image.publish(bad)
    rejected = graph.diagnostic_values(predicate=lambda v: int(v["frames_rejected"]) > before)
    assert rejected is not None, "the bad frame was not seen"
    assert graph.send(frame(next_stamp())) is not None, graph.raw.log()
    assert graph.raw.alive()
    assert "frame dropped" in graph.raw.log()


def _compressed(seconds: int, payload: bytes, fmt: str) -> CompressedImage:
    header = Header(stamp=frame(seconds).header.stamp, frame_id="test_camera")
    return CompressedImage(header=header, format=fmt, data=payload)


def test_compressed_input_jpeg_png_and_corrupt(graph):
    rgb = image_to_numpy(frame(0))
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    for payload, fmt in [(jpeg, "jpeg"), (png, "png")]:
        seconds = next_stamp()
        out = graph.send(_compressed(seconds, payload, fmt), graph.jpeg, graph.compressed_mask)
        assert out is not None and (out.width, out.height) == (160, 120), graph.compressed.log()
    before = int(graph.diagnostic_values("clipseg_compressed")["frames_rejected"])
    graph.jpeg.publish(_compressed(next_stamp(), jpeg[: len(jpeg) // 3] + b"garbage" * 10, "jpeg"))
    rejected = graph.diagnostic_values("clipseg_compressed", lambda v: int(v["frames_rejected"]) > before)
    assert rejected is not None
    assert graph.send(_compressed(next_stamp(), jpeg, "jpeg"), graph.jpeg, graph.compressed_mask) is not None
    assert graph.compressed.alive()


def test_visual_prompts_add_replace_remove_and_bad_ones_are_ignored(graph, cup):
    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[10:30, 10:30] = (200, 30, 30)
    mask = np.zeros((40, 50), np.uint8)
    mask[10:30, 10:30] = 255
    graph.probe.wait_for_subscribers(graph.visual_prompt)

    since = len(graph.label_info)
    bad = VisualPrompt(image=numpy_to_image(rgb, "rgb8"), mask=numpy_to_image(mask[:20], "mono8"), label="bad")
    graph.visual_prompt.publish(bad)
    good = VisualPrompt(image=numpy_to_image(rgb, "rgb8"), mask=numpy_to_image(mask, "mono8"), label="red square")
    graph.visual_prompt.publish(good)
    assert graph.labels(since, lambda labels: "red square" in labels) == ["cup", "red square"]
    seconds = next_stamp()
    labels = graph.send(frame(seconds), inbox=graph.out["label"])
    assert labels is not None and image_to_numpy(labels).max() <= 2
    assert graph.raw.alive() and "visual prompt 'bad' ignored" in graph.raw.log()

    since = len(graph.label_info)
    graph.visual_prompt.publish(VisualPrompt(label="red square"))  # an empty image removes it
    assert graph.labels(since, lambda labels: labels == ["cup"]) == ["cup"]


STARTUP_FAILURES = {  # node name: (parameters, exit code, what the log says)
    "clipseg_no_weights": ({"weights": "/nonexistent/clipseg"}, 3, "weights:="),
    "clipseg_fp64": ({"precision": "fp64"}, 2, "precision"),
    "clipseg_tensorrt_on_cpu": ({"backend": "tensorrt"}, 2, "NVIDIA GPU"),
    "clipseg_openvino": ({"backend": "openvino"}, 2, "backend: must be one of torch, onnxruntime, tensorrt"),
}


def start_early() -> NodeRuns:
    """Every startup failure's node, started with the session (background.py)."""
    runs = NodeRuns(early=True)
    checkpoint = tiny_clipseg.save_tiny_checkpoint(runs.directory / "tiny_checkpoint")
    for name, (params, _, _) in STARTUP_FAILURES.items():
        runs.start_node(name, {"weights": str(checkpoint), "device": "cpu", **params})
    return runs


@pytest.mark.parametrize("name", list(STARTUP_FAILURES))
def test_startup_failure_exits_with_a_clear_error(early, name):
    _, code, says = STARTUP_FAILURES[name]
    assert early.exit_code(name, timeout=STARTUP_S) == code, early[name].log()
    assert says in early[name].log()
