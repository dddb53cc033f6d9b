"""The inference worker without ROS: a real tiny model, the real board and mailbox, cameras that record what they
are asked to publish."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from clipseg_ros.engine.segmenter import Segmenter
from clipseg_ros.ros.image_codec import numpy_to_image
from clipseg_ros.ros.node import parameters
from clipseg_ros.ros.node.camera import Frame
from clipseg_ros.ros.node.diagnostics import SegmentStats
from clipseg_ros.ros.node.prompt_board import PromptBoard
from clipseg_ros.ros.node.settings import Settings
from clipseg_ros.ros.node.worker import Worker

WAIT_S = 10.0


class Camera:
    """What the worker uses of camera.Camera; `before_publish` runs where the real one waits for depth."""

    def __init__(self, listened: bool = True, before_publish=None, fail: bool = False) -> None:
        self.stats = SegmentStats()
        self.listened = listened
        self.published: list[tuple[int, tuple[str, ...], float]] = []  # (stamp, labels, time)
        self.before_publish = before_publish
        self.fail = fail
        self._changed = threading.Condition()

    def await_depth(self, header: Header) -> None:
        if self.before_publish is not None:
            self.before_publish()

    def publish(self, header, rgb, result, settings) -> None:
        if self.fail:
            self.fail = False
            raise RuntimeError("encoder broke")
        with self._changed:
            self.published.append((header.stamp.sec, tuple(result.labels), time.monotonic()))
            self._changed.notify_all()

    def wait(self, count: int, timeout: float = WAIT_S) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.published) >= count, timeout)


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, message: str, **_) -> None:
        self.lines.append(f"warning: {message}")

    def error(self, message: str, **_) -> None:
        self.lines.append(f"error: {message}")


class Board:
    """A configured board and its parameters, changed as the node changes them."""

    def __init__(self, prompts: list[str], **changes) -> None:
        defaults = {name: parameters.coerce(name, spec.default) for name, spec in parameters.SPECS.items()}
        self.values = {**defaults, "prompts": prompts, **changes}
        self.board = PromptBoard()
        self.board.configure(Settings.read(self.values.__getitem__))

    def set(self, **changes) -> None:
        assert self.board.change(changes, self.values.__getitem__) is None
        self.values.update(changes)


def frame(camera: str, seconds: int, encoding: str = "rgb8") -> Frame:
    msg = numpy_to_image(np.full((48, 64, 3), 120, np.uint8), "rgb8", Header(stamp=Time(sec=seconds)))
    msg.encoding = encoding
    return Frame(camera, msg, time.monotonic())


@pytest.fixture
def segmenter(tiny_model):
    return Segmenter(tiny_model, device="cpu", input_size=64)


@pytest.fixture
def run(segmenter):
    """Start a worker on `cameras`, with `frames` already waiting in its mailbox; stopped at the end."""
    workers = []

    def start(board: Board, cameras: dict[str, Camera], frames=(), log: Log | None = None) -> Worker:
        worker = Worker(board.board, segmenter, cameras, log or Log())
        for f in frames:
            worker.mailbox.put(f.camera, f)
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        assert worker.stop(join_s=WAIT_S)


def test_the_newest_frame_of_every_camera_goes_through_in_one_batch(run):
    front, left = Camera(), Camera()
    frames = [frame("front", 1), frame("front", 2), frame("left", 7), frame("front", 3)]
    worker = run(Board(["cup", "mug"]), {"front": front, "left": left}, frames)
    assert front.wait(1) and left.wait(1)
    time.sleep(0.3)
    assert [(s, labels) for s, labels, _ in front.published] == [(3, ("cup", "mug"))]
    assert [s for s, _, _ in left.published] == [7]
    assert worker.mailbox.dropped == {"front": 2}
    assert front.stats.processed_frames == left.stats.processed_frames == 1


def test_a_bad_frame_is_counted_and_warned_about_and_the_others_go_on(run):
    front, left, log = Camera(), Camera(), Log()
    run(Board(["cup"]), {"front": front, "left": left}, [frame("front", 1, "yuv422"), frame("left", 2)], log)
    assert left.wait(1)
    assert front.published == [] and front.stats.rejected_frames == 1
    assert any(line.startswith("warning: frame dropped:") and "yuv422" in line for line in log.lines), log.lines


def test_nothing_is_computed_while_paused_or_for_a_camera_nobody_listens_to(run):
    paused, unheard = Camera(), Camera(listened=False)
    run(Board([]), {"front": paused}, [frame("front", 1)])
    run(Board(["cup"]), {"front": unheard}, [frame("front", 1)])
    time.sleep(0.5)
    assert paused.published == [] and unheard.published == []
    assert paused.stats.processed_frames == unheard.stats.processed_frames == 0


def test_results_computed_with_replaced_prompts_are_discarded(run):
    board = Board(["cup"])
    camera = Camera(before_publish=lambda: board.set(prompts=["bottle"]))  # the change lands mid-batch
    worker = run(board, {"front": camera}, [frame("front", 1)])
    deadline = time.monotonic() + WAIT_S
    while board.board.discarded == 0:
        assert time.monotonic() < deadline, "the batch was never discarded"
        time.sleep(0.01)
    assert camera.published == []
    camera.before_publish = None
    worker.mailbox.put("front", frame("front", 2))
    assert camera.wait(1)
    assert camera.published[0][:2] == (2, ("bottle",))


def test_the_rate_limit_applies_and_a_change_of_it_to_the_next_frame(run):
    board = Board(["cup"], max_rate_hz=2.0)
    camera = Camera()
    worker = run(board, {"front": camera}, [frame("front", 1)])
    assert camera.wait(1)
    worker.mailbox.put("front", frame("front", 2))
    assert camera.wait(2)
    assert camera.published[1][2] - camera.published[0][2] > 0.4  # 2 Hz: half a second between frame starts

    board.set(max_rate_hz=0.001)  # one frame per 1000 s: the next one waits
    worker.mailbox.put("front", frame("front", 3))
    assert not camera.wait(3, timeout=0.8)
    board.set(max_rate_hz=0.0)
    assert camera.wait(3, timeout=2.0), "the old 1000 s period still held the frame"


def test_a_batch_in_flight_when_the_worker_stops_publishes_nothing(segmenter):
    inside, release = threading.Event(), threading.Event()

    def hold():
        inside.set()
        release.wait(WAIT_S)

    camera = Camera(before_publish=hold)
    worker = Worker(Board(["cup"]).board, segmenter, {"front": camera}, Log())
    worker.mailbox.put("front", frame("front", 1))
    worker.start()
    assert inside.wait(WAIT_S)
    assert not worker.stop(join_s=0.1)  # still in the batch
    release.set()
    assert worker.stop(join_s=WAIT_S)
    assert camera.published == [] and camera.stats.processed_frames == 0


def test_a_frame_that_fails_is_logged_and_the_worker_goes_on(run):
    camera, log = Camera(fail=True), Log()
    worker = run(Board(["cup"]), {"front": camera}, [frame("front", 1)], log)
    deadline = time.monotonic() + WAIT_S
    while not log.lines:
        assert time.monotonic() < deadline, "the failure was not logged"
        time.sleep(0.01)
    assert log.lines[0].startswith("error: frame failed: RuntimeError('encoder broke')")
    worker.mailbox.put("front", frame("front", 2))
    assert camera.wait(1) and camera.published[0][0] == 2
