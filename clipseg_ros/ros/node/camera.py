"""One camera of the segment node: its inputs, its newest frame, its publishers, its counters.

What the outputs mean (masks, label image, instances, 3D, points) is computed by the engine and by
`clipseg_ros.perception`; this module only subscribes, calls them and turns their results into messages.

Inputs are relative names (`image`, `camera_info`, or `<camera>/image` ...), so a namespace or a remap
moves them as ROS users expect; outputs are private (`~/mask` or `~/<camera>/mask`). The camera
subscribes only while someone listens to one of its outputs, as image_proc does: no decode, inference or
conversion for nobody; and while a service call waits for its next frame (`request_frame`), through the
same subscription, so that the call hears the camera as a listener would (QoS matched to its publishers).
Only frames someone listens to go to the worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from clipseg_ros.engine.frame_maps import FrameMaps
from clipseg_ros.engine.segmenter import SegmentationResult, Segmenter
from clipseg_ros.perception import DepthInput, Intrinsics, Perception, PerceptionSettings, perceive
from clipseg_ros.perception.camera_history import CameraHistory
from clipseg_ros.perception.temporal_filter import TemporalSettings
from clipseg_ros.perception.tracking import TrackingSettings
from clipseg_ros.ros.image_codec import compressed_to_rgb, image_to_rgb
from clipseg_ros.ros.node.depth_sync import DepthSync, intrinsics_from_camera_info
from clipseg_ros.ros.node.diagnostics import WARN_EVERY_S, SegmentStats
from clipseg_ros.ros.node.frame_outputs import OUTPUT_TYPES, PERCEPTION_OUTPUTS, frame_outputs
from clipseg_ros.ros.node.qos import MatchedSubscription
from clipseg_ros.ros.node.settings import InputSettings, OutputSettings


@dataclass(frozen=True)
class Frame:
    camera: str
    msg: Image | CompressedImage
    received: float  # time.monotonic() at arrival

    def decode(self, max_pixels: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB; ImageDecodeError says why not."""
        if isinstance(self.msg, CompressedImage):
            return compressed_to_rgb(self.msg, max_pixels=max_pixels)
        return image_to_rgb(self.msg, max_pixels=max_pixels)


class Camera:
    def __init__(
        self,
        node: Node,
        name: str,
        prefix: str,
        inputs: InputSettings,
        out_qos: QoSProfile,
        on_frame,
        track_ids: Iterator[int],
    ):
        """`name` labels the camera ("" for the only one); `prefix` is "" or "<camera>/"; `track_ids` the node's
        one source of track ids, shared by its cameras."""
        self.name, self._node, self._prefix, self._inputs, self._on_frame = name, node, prefix, inputs, on_frame
        # Settings from the frames' own (OutputSettings), applied as each frame is published.
        self.history = CameraHistory(TrackingSettings(), TemporalSettings(), track_ids)
        self.compressed = inputs.compressed
        self.stats = SegmentStats()
        self.latest: Frame | None = None  # for service calls without an image
        self.camera_info: CameraInfo | None = None
        self._publishers = {
            name: node.create_publisher(msg_type, f"~/{prefix}{name}", out_qos)
            for name, msg_type in OUTPUT_TYPES.items()
        }
        self.depth = DepthSync(inputs.depth_sync_s) if inputs.depth_sync_s is not None else None
        # As image_transport: `image` is resolved (namespace, remaps) and the transport's suffix follows, so
        # `-r image:=/camera/color/image_raw` also moves image/compressed.
        image = node.resolve_topic_name(f"{prefix}image")
        self.input_topic = f"{image}/compressed" if inputs.compressed else image
        self._subscriptions: list[MatchedSubscription] = []
        self.listened = False  # someone subscribes to an output (as of the last update_subscription)
        self._frame_requests: list[Future] = []  # service calls waiting for this camera's next frame
        self._idle_since: float | None = time.monotonic()
        self.idle_s = 0.0  # time spent unsubscribed for lack of listeners

    # -- subscribe on demand ----------------------------------------------------------------------

    def listeners(self) -> int:
        return sum(p.get_subscription_count() for p in self._publishers.values())

    @property
    def subscribed(self) -> bool:
        return bool(self._subscriptions)

    def update_subscription(self, active: bool) -> None:
        """Subscribe when active and wanted (listeners or a waiting service call), unsubscribe otherwise."""
        self.listened = active and self.listeners() > 0
        wanted = self.listened or (active and bool(self._frame_requests))
        if not wanted:
            self._fulfil_frame_requests(None)  # nothing will come: the calls learn it now
        if wanted == self.subscribed:
            return
        now = time.monotonic()
        if wanted:
            msg_type = CompressedImage if self._inputs.compressed else Image
            self._subscriptions = [
                self._subscribe(msg_type, self.input_topic, self._on_image),
                self._subscribe(CameraInfo, f"{self._prefix}camera_info", self._on_camera_info),
            ]
            if self.depth is not None:
                self._subscriptions += [
                    self._subscribe(Image, f"{self._prefix}depth/image", self.depth.add_depth),
                    self._subscribe(CameraInfo, f"{self._prefix}depth/camera_info", self.depth.set_camera_info),
                ]
            self.idle_s += now - self._idle_since if self._idle_since is not None else 0.0
            self._idle_since = None
        else:
            for subscription in self._subscriptions:
                subscription.destroy()
            self._subscriptions = []
            self.latest = None  # stale once nobody keeps it fresh
            self._idle_since = now

    def request_frame(self) -> Future:
        """A future for the next frame this camera receives; call update_subscription next, so that it
        subscribes. The future gets None if the camera unsubscribes first or the request is dropped."""
        future = Future()
        self._frame_requests.append(future)
        return future

    def drop_frame_request(self, future: Future) -> None:
        """The call stops waiting (its time is up): the future gets None unless its frame came."""
        if future in self._frame_requests:
            self._frame_requests.remove(future)
        if not future.done():
            future.set_result(None)

    def idle_seconds(self) -> float:
        return self.idle_s + (time.monotonic() - self._idle_since if self._idle_since is not None else 0.0)

    def diagnostic_status(
        self, node_name: str, segmenter: Segmenter, dropped: int, prompts: int, discarded: int
    ) -> DiagnosticStatus:
        """This camera's entry in /diagnostics: `dropped` frames replaced in the mailbox, `discarded` results."""
        return self.stats.status(
            name=f"{node_name}: {self.name + ' ' if self.name else ''}segmentation",
            hardware_id=str(segmenter.device),
            model=segmenter.model_id,
            dropped=dropped,
            cache=segmenter.cache_stats(),
            prompts=prompts,
            paused=prompts == 0,
            listening=self.subscribed,
            extra={
                "input_topic": self.input_topic,
                "subscribed": str(self.subscribed).lower(),
                "idle_no_listeners_s": f"{self.idle_seconds():.1f}",
                "results_discarded_superseded_prompts": str(discarded),
            },
        )

    def _subscribe(self, msg_type, topic: str, callback) -> MatchedSubscription:
        return MatchedSubscription(self._node, msg_type, topic, callback, self._inputs.depth, self._inputs.reliability)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        frame = Frame(self.name, msg, time.monotonic())
        self.stats.frame_received()
        self.latest = frame
        self._fulfil_frame_requests(frame)
        if self.listened:
            self._on_frame(frame)

    def _fulfil_frame_requests(self, frame: Frame | None) -> None:
        requests, self._frame_requests = self._frame_requests, []
        for request in requests:
            if not request.done():
                request.set_result(frame)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    # -- outputs ----------------------------------------------------------------------------------

    def publish(self, header: Header, rgb: np.ndarray, result: SegmentationResult, settings: OutputSettings) -> None:
        """The outputs someone reads, from `frame_outputs`, with this camera's depth frame and camera_info."""
        wanted = {name for name, publisher in self._publishers.items() if publisher.get_subscription_count() > 0}
        messages = frame_outputs(
            header,
            rgb,
            result,
            settings,
            self.history,
            wanted,
            lambda maps: self.perceive(header, maps, settings.perception),
            self.camera_info,
        )
        for name, msg in messages.items():
            self._publishers[name].publish(msg)

    def await_depth(self, header: Header) -> None:
        """Before a frame's outputs are published: its depth frame, if still on its way, gets up to the sync
        tolerance to arrive, when someone reads the 3D outputs."""
        readers = sum(self._publishers[name].get_subscription_count() for name in PERCEPTION_OUTPUTS)
        if self.depth is not None and readers:
            self.depth.wait_for(header)

    def perceive(
        self,
        header: Header,
        result: FrameMaps,
        settings: PerceptionSettings,
        depth: DepthInput | None = None,
        camera_info: CameraInfo | None = None,
    ) -> Perception:
        """Instances (and 3D, points) of one frame of this camera: with its paired depth frame unless one is given."""
        if depth is None and self.depth is not None:
            try:
                depth = self.depth.match(header)
            except ValueError as exc:  # a broken depth frame costs its 3D, not the 2D outputs
                self._node.get_logger().warning(f"depth frame ignored: {exc}", throttle_duration_sec=WARN_EVERY_S)
        return perceive_result(result, settings, depth, camera_info or self.camera_info)

    def destroy(self) -> None:
        self.update_subscription(active=False)
        for publisher in self._publishers.values():
            self._node.destroy_publisher(publisher)
        self._publishers.clear()


def perceive_result(
    result: FrameMaps, settings: PerceptionSettings, depth: DepthInput | None, camera_info: CameraInfo | None
) -> Perception:
    """`perceive` on a frame's published maps, with the colour intrinsics from `camera_info` where they fit."""
    size = result.masks.shape[2], result.masks.shape[1]
    colour = colour_intrinsics(camera_info, size)
    return perceive(result.probabilities, result.masks, result.labels, settings, depth, colour)


def colour_intrinsics(camera_info: CameraInfo | None, size: tuple[int, int]) -> Intrinsics | None:
    """The colour camera's intrinsics when its camera_info describes this frame (same size, calibrated);
    otherwise None, and the post-processing takes the depth camera's, scaled (depth aligned to colour)."""
    if camera_info is None or (camera_info.width, camera_info.height) != size:
        return None
    try:
        return intrinsics_from_camera_info(camera_info)
    except ValueError:  # uncalibrated (a K of zeros)
        return None
