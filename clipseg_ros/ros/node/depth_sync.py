"""Pairing colour frames with depth frames by stamp (approximate time), without message_filters.

`StampPairer` is the pairing itself, on plain numbers (stamps in any one unit), so its rules are tested without
ROS; `DepthSync` is the camera's depth input: it keeps the last depth frames and camera_info as they arrive and
gives the depth frame for a colour header, decoded for `clipseg_ros.perception`.

Rules: a colour frame pairs with the depth frame whose stamp is closest to its own, if within the tolerance
(a tie goes to the newer depth frame); an older depth frame is stale, and the colour frame goes on without 3D.
Depth and colour come on separate topics, so a colour frame's depth frame may still be on its way when the model
is done with the colour frame: while a live depth stream is behind it, the colour frame waits for its depth frame,
at most the tolerance (in seconds). Only the last `history` depth frames are kept, so memory is flat however fast
depth arrives.
"""

from __future__ import annotations

import bisect
import threading
import time
from typing import Generic, TypeVar

from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from clipseg_ros.engine import limits
from clipseg_ros.perception import DepthInput, Intrinsics
from clipseg_ros.ros.image_codec import image_to_numpy

Item = TypeVar("Item")


class StampPairer(Generic[Item]):
    """Depth frames by stamp, each colour stamp paired with the closest within `tolerance`; thread-safe (callbacks
    add, the worker and the service pair)."""

    def __init__(self, tolerance: float, history: int = limits.DEPTH_HISTORY, live: float | None = None) -> None:
        """`live`: a depth stream whose newest frame is older than this (in stamp units) is taken as stopped; no
        colour frame waits for it. None: never wait."""
        if not tolerance >= 0:
            raise ValueError(f"stamp tolerance must be >= 0, got {tolerance!r}")
        limits.check_count("depth history", history, 1)
        self.tolerance = tolerance
        self._history = history
        self._live = live
        self._lock = threading.Lock()
        self._depth_arrived = threading.Condition(self._lock)
        self._depth: list[tuple[float, Item]] = []  # sorted by stamp

    def add_depth(self, stamp: float, item: Item) -> None:
        with self._depth_arrived:
            # Out-of-order arrivals (several publishers, a replayed bag) still land in stamp order.
            bisect.insort(self._depth, (stamp, item), key=lambda frame: frame[0])
            del self._depth[: -self._history]
            self._depth_arrived.notify_all()

    def match(self, stamp: float) -> tuple[float, Item] | None:
        """The depth frame (stamp, item) closest to a colour stamp, or None when none is within tolerance."""
        with self._lock:
            return self._closest(stamp)

    def wait_for_partner(self, stamp: float, timeout_s: float) -> None:
        """While a colour stamp has no partner and the live depth stream is behind it, wait for one, at most
        `timeout_s` seconds (returning as soon as a partner, or a depth frame past it, arrives)."""
        deadline = time.monotonic() + timeout_s
        with self._depth_arrived:
            while self._closest(stamp) is None and self._behind(stamp):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._depth_arrived.wait(left)

    def settled(self, stamp: float) -> bool:
        """Whether no depth frame still to come can pair with `stamp`, depth coming in stamp order: the newest is
        past the tolerance (a recording read ahead, where nothing is waited for)."""
        with self._lock:
            return bool(self._depth) and self._depth[-1][0] > stamp + self.tolerance

    def _behind(self, stamp: float) -> bool:
        """Whether the depth stream is live and has not yet reached `stamp`: its next frame may pair with it."""
        if self._live is None or not self._depth:
            return False
        newest = self._depth[-1][0]
        return stamp - self._live <= newest < stamp

    def _closest(self, stamp: float) -> tuple[float, Item] | None:
        best = None
        for depth in self._depth:
            gap = abs(depth[0] - stamp)
            if gap <= self.tolerance and (best is None or gap <= abs(best[0] - stamp)):
                best = depth  # `<=` over stamp order: a tie goes to the newer frame
        return best


def stamp_ns(header: Header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def intrinsics_from_camera_info(msg: CameraInfo) -> Intrinsics:
    """The pinhole K of a camera_info with its image size; an uncalibrated (all-zero K) one is refused."""
    return Intrinsics.from_k(msg.k, msg.width, msg.height)


def depth_from_messages(depth: Image, camera_info: CameraInfo) -> DepthInput:
    """A REP-118 depth image (16UC1 mm, 32FC1 m) and its camera_info as the post-processing's depth input.

    Raises ValueError (ImageDecodeError is one) naming what is wrong: encoding, size, a K of zeros.
    """
    limits.check_choice("depth encoding", depth.encoding, limits.DEPTH_ENCODINGS)
    return DepthInput(image_to_numpy(depth), depth.encoding, intrinsics_from_camera_info(camera_info))


class DepthSync:
    """One camera's depth input: depth frames and their camera_info in, the frame paired with a colour header out."""

    def __init__(self, tolerance_s: float = limits.DEFAULT_SYNC_TOLERANCE_S, history: int = limits.DEPTH_HISTORY):
        limits.check_positive_number("depth sync tolerance (s)", tolerance_s, limits.MAX_SYNC_TOLERANCE_S)
        self._wait_s = tolerance_s
        self._pairer: StampPairer[Image] = StampPairer(
            round(tolerance_s * 1e9), history, live=round(limits.DEPTH_STREAM_LIVE_S * 1e9)
        )
        self._camera_info: CameraInfo | None = None

    def add_depth(self, msg: Image) -> None:
        """Subscription callback: only keeps the message (decoding waits until a colour frame pairs with it)."""
        self._pairer.add_depth(stamp_ns(msg.header), msg)

    def set_camera_info(self, msg: CameraInfo) -> None:
        """Subscription callback of the depth camera_info (its intrinsics rarely change: the latest is kept)."""
        self._camera_info = msg

    def wait_for(self, header: Header) -> None:
        """Give the depth frame of the colour frame of `header`, while it may still be on its way, at most the
        tolerance to arrive. Not in the thread that runs the depth subscription: nothing could arrive."""
        self._pairer.wait_for_partner(stamp_ns(header), self._wait_s)

    def settled(self, header: Header) -> bool:
        """Whether the depth frame of the colour frame of `header` is known, read ahead (see StampPairer.settled)."""
        return self._pairer.settled(stamp_ns(header))

    def match(self, header: Header) -> DepthInput | None:
        """The depth frame paired with the colour frame of `header`; None when none is within the tolerance
        (missing or stale depth) or no depth camera_info has arrived yet. Raises ValueError for a bad frame."""
        paired = self._pairer.match(stamp_ns(header))
        camera_info = self._camera_info
        if paired is None or camera_info is None:
            return None
        return depth_from_messages(paired[1], camera_info)
