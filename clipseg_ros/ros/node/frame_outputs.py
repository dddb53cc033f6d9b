"""A segmented frame's outputs as messages: what a camera of the node publishes, and what `clipseg-label-bags`
records for a frame of a bag. One function for both, so a recording holds the messages the node would have sent.

What the outputs mean is computed by the engine and `clipseg_ros.perception`; this only calls them in order and
turns their results into messages, for the outputs asked for (encoding costs milliseconds per output at camera
sizes).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from clipseg_ros.engine.frame_maps import FrameMaps
from clipseg_ros.engine.overlay import draw_tracks, render_overlay
from clipseg_ros.engine.segmenter import SegmentationResult
from clipseg_ros.msg import Segmentation
from clipseg_ros.perception import Perception
from clipseg_ros.perception.camera_history import CameraHistory
from clipseg_ros.ros.image_codec import mask_to_image, numpy_to_image
from clipseg_ros.ros.messages import marker_array, point_cloud, segmentation_message
from clipseg_ros.ros.node.settings import OutputSettings

# Each output of a camera (the topic's last name) and its message type.
OUTPUT_TYPES = {
    "mask": Image,
    "probability": Image,
    "label": Image,
    "overlay": Image,
    "camera_info": CameraInfo,
    "segmentation": Segmentation,
    "points": PointCloud2,
    "markers": MarkerArray,
}
PERCEPTION_OUTPUTS = ("segmentation", "points", "markers")  # the outputs that need instances (and 3D)


def frame_outputs(
    header: Header,
    rgb: np.ndarray,
    result: SegmentationResult,
    settings: OutputSettings,
    history: CameraHistory,
    wanted: Collection[str],
    perceive: Callable[[FrameMaps], Perception],
    camera_info: CameraInfo | None,
) -> dict[str, object]:
    """The messages of the `wanted` outputs of one frame (its `header` on every one), in publishing order.

    `history` is the camera's state between frames (steady masks, tracks): with tracking on, every frame's
    instances are found and tracked, wanted or not, since ids must not depend on who listens. `perceive` gives
    the frame's instances (and 3D, with the frame's depth) from its maps; `camera_info` the colour camera's.
    """
    wants = {name: name in wanted for name in OUTPUT_TYPES}
    wants["overlay"] = wants["overlay"] and settings.overlay_alpha is not None
    messages: dict[str, object] = {}
    stamp = stamp_seconds(header)
    history.configure(settings.tracking, settings.temporal)
    maps = history.maps(stamp, result.labels, result.probabilities, result.threshold)
    if wants["mask"]:
        messages["mask"] = mask_to_image(maps.masks.any(axis=0), header)
    if wants["probability"]:
        messages["probability"] = numpy_to_image(maps.probabilities.max(axis=0), "32FC1", header)
    if camera_info is not None and wants["camera_info"]:
        messages["camera_info"] = _restamped(camera_info, header)
    perception, tracked = None, ()
    if history.tracking or any(wants[name] for name in (*PERCEPTION_OUTPUTS, "overlay")):
        perception = perceive(maps)
        tracked = history.track(stamp, maps.labels, perception.instances)
    if wants["label"] or wants["overlay"]:
        labels = maps.label_image()
        if wants["label"]:
            messages["label"] = numpy_to_image(labels, "mono8", header)
        if wants["overlay"]:
            image = render_overlay(rgb, labels, list(maps.labels), settings.overlay_alpha)
            draw_tracks(image, [(t.track_id, t.instance.label_index, t.trail) for t in tracked if t.track_id])
            messages["overlay"] = numpy_to_image(image, "rgb8", header)
    if perception is None:
        return messages
    if wants["segmentation"]:
        messages["segmentation"] = segmentation_message(header, maps, perception, settings.with_probabilities, tracked)
    if wants["points"] and perception.points is not None:
        messages["points"] = point_cloud(header, perception.points)
    if wants["markers"]:  # also without depth: it clears the boxes of earlier frames
        messages["markers"] = marker_array(header, maps.labels, tracked)
    return messages


def _restamped(camera_info: CameraInfo, header: Header) -> CameraInfo:
    """The camera's own info with the frame's header (outputs keep the frame's size, so it describes them)."""
    info = CameraInfo()
    for field in CameraInfo.get_fields_and_field_types():
        setattr(info, field, getattr(camera_info, field))
    info.header = header
    return info


def stamp_seconds(header: Header) -> float:
    """A header's stamp in seconds: tracks and steady masks are timed by the frames, not by their arrival."""
    return header.stamp.sec + header.stamp.nanosec * 1e-9
