"""One camera of the segment node: its inputs, its newest frame, its publishers, its counters.

What the outputs mean (masks, label image, instances, 3D, points) is computed by the engine and by
`clipseg_ros.perception`; this module only subscribes, calls them and turns their results into messages.

Inputs are relative names (`image`, `camera_info`, or `<camera>/image` ...), so a namespace or a remap
moves them as ROS users expect; outputs are private (`~/mask` or `~/<camera>/mask`). The camera
subscribes only while someone listens to one of its outputs or a service call waits for its frame,
as image_proc does: no decode, inference or conversion for nobody.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from clipseg_ros.msg import Segmentation
from clipseg_ros.overlay import render_overlay
from clipseg_ros.perception import DepthInput, Intrinsics, Perception, PerceptionSettings, perceive
from clipseg_ros.ros.depth_sync import DepthSync, intrinsics_from_camera_info
from clipseg_ros.ros.diagnostics import SegmentStats
from clipseg_ros.ros.image_codec import compressed_to_rgb, image_to_rgb, mask_to_image, numpy_to_image
from clipseg_ros.ros.input_qos import MatchedSubscription
from clipseg_ros.ros.messages import marker_array, point_cloud, segmentation_message
from clipseg_ros.segmenter import SegmentationResult

WARN_EVERY_S = 2.0


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


@dataclass(frozen=True)
class InputSettings:
    compressed: bool
    depth: int
    reliability: str
    depth_sync_s: float | None  # None: no depth input


@dataclass(frozen=True)
class OutputSettings:
    overlay_alpha: float | None  # None: no overlay
    perception: PerceptionSettings
    with_probabilities: bool  # 32FC1 maps inside ~/segmentation


class Camera:
    PERCEPTION_OUTPUTS = ("segmentation", "points", "markers")

    def __init__(self, node: Node, name: str, prefix: str, inputs: InputSettings, out_qos: QoSProfile, on_frame):
        """`name` labels the camera ("" for the only one); `prefix` is "" or "<camera>/"."""
        self.name, self._node, self._prefix, self._inputs, self._on_frame = name, node, prefix, inputs, on_frame
        self.compressed = inputs.compressed
        self.stats = SegmentStats()
        self.latest: Frame | None = None  # for service calls without an image
        self.camera_info: CameraInfo | None = None
        self._publishers = {
            "mask": node.create_publisher(Image, f"~/{prefix}mask", out_qos),
            "probability": node.create_publisher(Image, f"~/{prefix}probability", out_qos),
            "label": node.create_publisher(Image, f"~/{prefix}label", out_qos),
            "overlay": node.create_publisher(Image, f"~/{prefix}overlay", out_qos),
            "camera_info": node.create_publisher(CameraInfo, f"~/{prefix}camera_info", out_qos),
            "segmentation": node.create_publisher(Segmentation, f"~/{prefix}segmentation", out_qos),
            "points": node.create_publisher(PointCloud2, f"~/{prefix}points", out_qos),
            "markers": node.create_publisher(MarkerArray, f"~/{prefix}markers", out_qos),
        }
        self.depth = DepthSync(inputs.depth_sync_s) if inputs.depth_sync_s is not None else None
        # As image_transport: `image` is resolved (namespace, remaps) and the transport's suffix follows, so
        # `-r image:=/camera/color/image_raw` also moves image/compressed.
        image = node.resolve_topic_name(f"{prefix}image")
        self.input_topic = f"{image}/compressed" if inputs.compressed else image
        self._subscriptions: list[MatchedSubscription] = []
        self.service_waiting = 0  # service calls waiting for this camera's next frame
        self._idle_since: float | None = time.monotonic()
        self.idle_s = 0.0  # time spent unsubscribed for lack of listeners

    # -- subscribe on demand ----------------------------------------------------------------------

    def listeners(self) -> int:
        return sum(p.get_subscription_count() for p in self._publishers.values())

    @property
    def subscribed(self) -> bool:
        return bool(self._subscriptions)

    def update_subscription(self, active: bool) -> bool:
        """Subscribe when active and wanted, unsubscribe otherwise; True when that changed anything."""
        wanted = active and (self.listeners() > 0 or self.service_waiting > 0)
        if wanted == self.subscribed:
            return False
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
        return True

    def idle_seconds(self) -> float:
        return self.idle_s + (time.monotonic() - self._idle_since if self._idle_since is not None else 0.0)

    def _subscribe(self, msg_type, topic: str, callback) -> MatchedSubscription:
        return MatchedSubscription(self._node, msg_type, topic, callback, self._inputs.depth, self._inputs.reliability)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        frame = Frame(self.name, msg, time.monotonic())
        self.stats.frame_received()
        self.latest = frame
        self._on_frame(frame)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    # -- outputs ----------------------------------------------------------------------------------

    def publish(self, header: Header, rgb: np.ndarray, result: SegmentationResult, settings: OutputSettings) -> None:
        """The outputs someone reads (encoding costs milliseconds per output at camera sizes)."""
        wants = {name: p.get_subscription_count() > 0 for name, p in self._publishers.items()}
        if wants["mask"]:
            self._publishers["mask"].publish(mask_to_image(result.masks.any(axis=0), header))
        if wants["probability"]:
            self._publishers["probability"].publish(numpy_to_image(result.probabilities.max(axis=0), "32FC1", header))
        wants["overlay"] = wants["overlay"] and settings.overlay_alpha is not None
        if wants["label"] or wants["overlay"]:
            labels = result.label_image()
            if wants["label"]:
                self._publishers["label"].publish(numpy_to_image(labels, "mono8", header))
            if wants["overlay"]:
                image = render_overlay(rgb, labels, result.labels, settings.overlay_alpha)
                self._publishers["overlay"].publish(numpy_to_image(image, "rgb8", header))
        camera_info = self.camera_info
        if camera_info is not None and wants["camera_info"]:
            # Same size as the frame (outputs are not resized): the camera's own info, with the frame's header.
            info = CameraInfo()
            for field in CameraInfo.get_fields_and_field_types():
                setattr(info, field, getattr(camera_info, field))
            info.header = header
            self._publishers["camera_info"].publish(info)
        if any(wants[name] for name in self.PERCEPTION_OUTPUTS):
            perception = self.perceive(header, result, settings.perception)
            if wants["segmentation"]:
                msg = segmentation_message(header, result, perception, settings.with_probabilities)
                self._publishers["segmentation"].publish(msg)
            if wants["points"] and perception.points is not None:
                self._publishers["points"].publish(point_cloud(header, perception.points))
            if wants["markers"]:  # also without depth: it clears the boxes of earlier frames
                self._publishers["markers"].publish(marker_array(header, result.labels, perception.instances))

    def await_depth(self, header: Header) -> None:
        """Before a frame's outputs are published: its depth frame, if still on its way, gets up to the sync
        tolerance to arrive, when someone reads the 3D outputs."""
        readers = sum(self._publishers[name].get_subscription_count() for name in self.PERCEPTION_OUTPUTS)
        if self.depth is not None and readers:
            self.depth.wait_for(header)

    def perceive(
        self,
        header: Header,
        result: SegmentationResult,
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
    result: SegmentationResult, settings: PerceptionSettings, depth: DepthInput | None, camera_info: CameraInfo | None
) -> Perception:
    """`perceive` on an engine result, with the colour intrinsics from `camera_info` where they fit the image."""
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
