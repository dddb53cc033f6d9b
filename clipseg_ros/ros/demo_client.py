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
from sensor_msgs.msg import Image
from std_msgs.msg import String

from clipseg_ros.msg import VisualPrompt
from clipseg_ros.prompts import split_prompts
from clipseg_ros.ros.image_codec import image_to_rgb, numpy_to_image
from clipseg_ros.srv import Segment

NODE = "/clipseg"


class DemoClient(Node):
    def __init__(self) -> None:
        super().__init__("clipseg_demo")
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._labels: list[str] = []
        self._overlays: list[Image] = []
        self._frames: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.diagnostics: dict[str, str] = {}
        self._prompt = self.create_publisher(String, f"{NODE}/prompt", 10)
        self.segment = self.create_client(Segment, f"{NODE}/segment")
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(String, f"{NODE}/label_info", self._on_label_info, latched)
        self.create_subscription(Image, f"{NODE}/overlay", self._on_overlay, 2)
        self.create_subscription(Image, "/image", self._on_frame, 2)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_label_info(self, msg: String) -> None:
        with self._changed:
            self._labels = json.loads(msg.data)["labels"][1:]
            self._overlays.clear()  # older overlays show the older prompts
            self._changed.notify_all()

    def _on_overlay(self, msg: Image) -> None:
        with self._changed:
            self._overlays.append(msg)
            self._changed.notify_all()

    def _on_frame(self, msg: Image) -> None:
        with self._changed:
            self._frames[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = image_to_rgb(msg)
            while len(self._frames) > 10:
                self._frames.popitem(last=False)
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

    def collect_overlays(
        self, key: Callable[[Image, np.ndarray | None], str | None], count: int, timeout: float
    ) -> dict[str, np.ndarray]:
        """Overlays of the current prompts, one per distinct key, until `count` keys or the timeout.

        `key` gets the overlay and the camera frame it was made from (None while that frame has not come
        here yet: such an overlay is kept for the next try)."""
        found: dict[str, np.ndarray] = {}
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found) < count and self._changed.wait(max(0.0, deadline - time.monotonic())):
                waiting = []
                for msg in self._overlays:
                    frame = self._frames.get((msg.header.stamp.sec, msg.header.stamp.nanosec))
                    name = key(msg, frame)
                    if name is not None and name not in found:
                        found[name] = image_to_rgb(msg).copy()
                    elif frame is None:
                        waiting.append(msg)
                self._overlays[:] = waiting[-10:]
        return found

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
