"""The demo's side of the graph: sends prompts and service calls to the segment node, collects its outputs.

Spun by a background thread; the demo's main thread blocks on the helpers here.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from clipseg_ros.engine.prompts import split_prompts
from clipseg_ros.msg import Segmentation, VisualPrompt
from clipseg_ros.ros.image_codec import image_to_rgb, numpy_to_image
from clipseg_ros.srv import Segment

NODE = "/clipseg"
KEPT = 10  # frames, and per output messages of frames, held here


def stamp_key(msg) -> tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


class DemoClient(Node):
    def __init__(self) -> None:
        super().__init__("clipseg_demo")
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._labels: list[str] = []
        # Per-frame outputs waiting to be matched to their camera frame, and those looked up by stamp.
        self._pending: dict[str, list] = {"overlay": [], "segmentation": []}
        self._by_stamp: dict[str, OrderedDict] = {"points": OrderedDict(), "markers": OrderedDict()}
        self._frames: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.diagnostics: dict[str, str] = {}
        self._prompt = self.create_publisher(String, f"{NODE}/prompt", 10)
        self.segment = self.create_client(Segment, f"{NODE}/segment")
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(String, f"{NODE}/label_info", self._on_label_info, latched)
        self.create_subscription(Image, f"{NODE}/overlay", lambda m: self._on_output("overlay", m), 2)
        self.create_subscription(Segmentation, f"{NODE}/segmentation", lambda m: self._on_output("segmentation", m), 2)
        self.create_subscription(PointCloud2, f"{NODE}/points", lambda m: self._on_stamped("points", m), 2)
        self.create_subscription(MarkerArray, f"{NODE}/markers", lambda m: self._on_stamped("markers", m), 2)
        self.create_subscription(Image, "/image", self._on_frame, 2)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        # The camera's topics, for frames the demo sends itself (track_tour) once the sample camera has stopped.
        self._camera = {
            "info": self.create_publisher(CameraInfo, "/camera_info", 5),
            "depth_info": self.create_publisher(CameraInfo, "/depth/camera_info", 5),
            "depth": self.create_publisher(Image, "/depth/image", 5),
            "image": self.create_publisher(Image, "/image", 5),
        }

    def _on_label_info(self, msg: String) -> None:
        with self._changed:
            self._labels = json.loads(msg.data)["labels"][1:]
            for pending in self._pending.values():
                pending.clear()  # older outputs show the older prompts
            self._changed.notify_all()

    def _on_output(self, kind: str, msg) -> None:
        with self._changed:
            self._pending[kind].append(msg)
            del self._pending[kind][:-KEPT]  # nobody collects between tours' phases: hold no more than a few
            self._changed.notify_all()

    def _on_stamped(self, kind: str, msg) -> None:
        # A MarkerArray has no header of its own: its markers carry the frame's.
        self._keep(self._by_stamp[kind], stamp_key(msg.markers[0] if kind == "markers" else msg), msg)

    def _on_frame(self, msg: Image) -> None:
        self._keep(self._frames, stamp_key(msg), image_to_rgb(msg))

    def _keep(self, store: OrderedDict, key: tuple[int, int], value) -> None:
        with self._changed:
            store[key] = value
            while len(store) > KEPT:
                store.popitem(last=False)
            self._changed.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("clipseg"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def send_prompt(self, text: str, timeout: float = 30.0) -> list[str]:
        """Publish on ~/prompt; the label names once the node's label_info shows them."""
        expected = split_prompts(text)
        deadline = time.monotonic() + timeout
        while self._prompt.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        self._prompt.publish(String(data=text))
        with self._changed:
            if not self._changed.wait_for(lambda: self._labels == expected, deadline - time.monotonic()):
                raise TimeoutError(f"label_info never showed {expected} (last: {self._labels})")
            return list(self._labels)

    def collect(
        self, kind: str, key: Callable[[object, np.ndarray | None], str | None], count: int, timeout: float
    ) -> dict[str, tuple[object, np.ndarray]]:
        """`kind` ("overlay", "segmentation") messages of the current prompts with the camera frame each was made
        from, one per distinct key, until `count` keys or the timeout.

        `key` gets the message and its camera frame (None while that frame has not come here yet: such a
        message is kept for the next try)."""
        found: dict[str, tuple[object, np.ndarray]] = {}
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:  # what is already here first: an answer can come before its caller starts collecting
                waiting = []
                for msg in self._pending[kind]:
                    frame = self._frames.get(stamp_key(msg))
                    name = key(msg, frame)
                    if name is not None and name not in found:
                        found[name] = (msg, frame)
                    elif frame is None:
                        waiting.append(msg)
                self._pending[kind][:] = waiting[-KEPT:]
                if len(found) >= count or not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    return found

    def stamped(self, kind: str, stamp, timeout: float = 5.0):
        """The `kind` ("points", "markers") message of the frame with this stamp, or None if none came in time."""
        key = (stamp.sec, stamp.nanosec)
        with self._changed:
            self._changed.wait_for(lambda: key in self._by_stamp[kind], timeout)
            return self._by_stamp[kind].get(key)

    def call_segment(
        self,
        rgb: np.ndarray | None,
        prompts: list[str],
        visual_prompts: list[VisualPrompt] = (),
        timeout: float = 120.0,
    ) -> Segment.Response:
        request = Segment.Request(prompts=prompts, visual_prompts=list(visual_prompts))
        if rgb is not None:
            request.image = numpy_to_image(rgb, "rgb8")
            request.image.header.frame_id = "demo"
        done = threading.Event()
        future = self.segment.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            raise TimeoutError("/clipseg/segment did not answer")
        return future.result()

    def send_frame(self, info: CameraInfo, rgb: np.ndarray, depth_m: np.ndarray, timeout: float = 20.0):
        """Publish one colour frame with its aligned depth (metres) and camera_info (whose header both take), and
        return the node's Segmentation of it, resent until it comes (None after `timeout`): one frame at a time,
        so none is dropped for a busy node."""
        stamp = info.header.stamp
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._camera["info"].publish(info)
            self._camera["depth_info"].publish(info)
            self._camera["depth"].publish(numpy_to_image(depth_m, "32FC1", info.header))
            time.sleep(0.01)  # the depth frame is in the node before its colour frame, as the camera sends them
            self._camera["image"].publish(numpy_to_image(rgb, "rgb8", info.header))
            found = self.collect("segmentation", stamped(stamp), 1, min(3.0, max(0.0, deadline - time.monotonic())))
            if found:
                return found["it"][0]
        return None

    def wait_for_frames(self, count: int, timeout: float = 30.0) -> bool:
        """Until `count` camera frames came here too: the node's latest frame is then one we hold
        (our subscription can be matched to the camera later than the node's)."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._frames) >= count, timeout)

    def frame_at(self, stamp, timeout: float = 5.0) -> np.ndarray | None:
        """The camera frame with this stamp. The node's answer can overtake our own copy of the
        frame (both come to this node; which callback runs first is not ordered), so wait a little."""
        key = (stamp.sec, stamp.nanosec)
        with self._changed:
            self._changed.wait_for(lambda: key in self._frames, timeout)
            return self._frames.get(key)


def showing(image: np.ndarray, labels: list[str] | None = None):
    """A `DemoClient.collect` key that takes the outputs of frames showing `image` (and, given, of these labels)."""

    def key(msg, frame: np.ndarray | None) -> str | None:
        if labels is not None and list(msg.labels) != labels:
            return None
        return "it" if frame is not None and np.array_equal(frame, image) else None

    return key


def with_depth(key):
    """`key`, for segmentations paired with their depth frame only. Under load the node may segment a frame before
    its depth frame has arrived: that one is published without 3D, and the camera's next one is taken."""
    return lambda msg, frame: key(msg, frame) if msg.has_depth else None


def stamped(stamp):
    """A `DemoClient.collect` key that takes the output of the frame with this stamp."""
    return lambda msg, _: "it" if msg.header.stamp == stamp else None
