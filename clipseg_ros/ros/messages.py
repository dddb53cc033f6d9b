"""The post-processing's numpy results as messages: Segmentation (with Instances), PointCloud2, MarkerArray.

Every message carries the segmented frame's header unchanged, so its stamp and optical frame_id match the
camera and depth images; nothing is converted point by point in Python.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import Point, Vector3
from sensor_msgs.msg import PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from clipseg_ros.engine.frame_maps import FrameMaps
from clipseg_ros.engine.overlay import label_colors
from clipseg_ros.engine.segmenter import SegmentationResult
from clipseg_ros.msg import Instance as InstanceMsg
from clipseg_ros.msg import Segmentation
from clipseg_ros.perception import Instance, Perception, Points
from clipseg_ros.perception.tracking import TrackedInstance
from clipseg_ros.ros.image_codec import image_to_numpy, mask_to_image, numpy_to_image

# PointCloud2 layout of `Points`: what Nav2's costmap layers read (x, y, z) and what a grasp planner filters on.
POINT_DTYPE = np.dtype(
    [("x", np.float32), ("y", np.float32), ("z", np.float32), ("label", np.uint32), ("probability", np.float32)]
)
POINT_FIELDS = (
    ("x", PointField.FLOAT32),
    ("y", PointField.FLOAT32),
    ("z", PointField.FLOAT32),
    ("label", PointField.UINT32),
    ("probability", PointField.FLOAT32),
)
MARKER_NAMESPACE = "clipseg"
BOX_LINE_WIDTH_M = 0.005
TEXT_HEIGHT_M = 0.04
# A box's corners as offsets in box sizes (corner k: -1/2 or +1/2 from bits 0, 1, 2 of k); its 12 edges join
# corners that differ in one bit.
_CORNERS = np.array([[(k >> axis & 1) - 0.5 for axis in range(3)] for k in range(8)])
_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


def segmentation_message(
    header: Header,
    result: FrameMaps | SegmentationResult,
    perception: Perception,
    with_probabilities: bool = False,
    tracked: Sequence[TrackedInstance] | None = None,
) -> Segmentation:
    """Everything of one frame: per-prompt masks and scores (and probabilities if asked), and the instances
    (`tracked`: the same instances with their tracks; None: untracked)."""
    msg = Segmentation(header=header, labels=list(result.labels), threshold=float(result.threshold))
    msg.masks = [mask_to_image(mask, header) for mask in result.masks]
    msg.scores = [float(score) for score in result.scores]
    if with_probabilities:
        msg.probabilities = [numpy_to_image(p, "32FC1", header) for p in result.probabilities]
    msg.has_depth = perception.has_depth
    msg.instances = instance_messages(header, perception.instances if tracked is None else tracked)
    return msg


def instance_messages(header: Header, instances: Sequence[Instance | TrackedInstance]) -> list[InstanceMsg]:
    """The instances as messages (also what the Segment service answers with), masks cropped to their boxes; an
    Instance without its track is untracked (track_id 0)."""
    messages = []
    for item in instances:
        instance = item.instance if isinstance(item, TrackedInstance) else item
        x, y, w, h = instance.bbox
        msg = InstanceMsg(
            label_index=instance.label_index,
            label=instance.label,
            score_max=instance.score_max,
            score_mean=instance.score_mean,
            bbox=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h),
            area=instance.area,
            centroid_x=instance.centroid[0],
            centroid_y=instance.centroid[1],
            mask=mask_to_image(instance.mask, header),
            has_3d=instance.has_3d,
            point_count=instance.point_count,
        )
        if instance.box3d is not None:
            box = instance.box3d
            msg.centroid_3d = Point(x=box.centroid[0], y=box.centroid[1], z=box.centroid[2])
            msg.box_center = Point(x=box.center[0], y=box.center[1], z=box.center[2])
            msg.box_size = Vector3(x=box.size[0], y=box.size[1], z=box.size[2])
        if isinstance(item, TrackedInstance):
            msg.track_id, msg.age_frames, msg.age_s = item.track_id, item.age_frames, item.age_s
            if item.velocity is not None:
                msg.has_velocity = True
                msg.velocity = Vector3(x=item.velocity[0], y=item.velocity[1], z=item.velocity[2])
        messages.append(msg)
    return messages


def point_cloud(header: Header, points: Points) -> PointCloud2:
    """An unordered cloud (height 1) of x, y, z, label (index into the frame's labels) and probability."""
    packed = np.empty(len(points), dtype=POINT_DTYPE)
    packed["x"], packed["y"], packed["z"] = points.xyz[:, 0], points.xyz[:, 1], points.xyz[:, 2]
    packed["label"] = points.label_index
    packed["probability"] = points.probability
    msg = PointCloud2(header=header, height=1, width=len(points), is_dense=True)
    msg.fields = [
        PointField(name=name, offset=POINT_DTYPE.fields[name][1], datatype=datatype, count=1)
        for name, datatype in POINT_FIELDS
    ]
    msg.is_bigendian = sys.byteorder == "big"
    msg.point_step = POINT_DTYPE.itemsize
    msg.row_step = msg.point_step * len(points)
    msg.data = packed.tobytes()
    return msg


def marker_array(
    header: Header, labels: Sequence[str], instances: Sequence[Instance | TrackedInstance]
) -> MarkerArray:
    """Markers for rviz: the instances with 3D: a wire box and a label each ("cup #7 0.93" with its track id), after
    a DELETEALL of the last frame's."""
    markers = [Marker(header=header, ns=MARKER_NAMESPACE, action=Marker.DELETEALL)]
    colours = label_colors(len(labels)) / 255.0
    items = [(i.instance, i.track_id) if isinstance(i, TrackedInstance) else (i, 0) for i in instances]
    for number, (instance, track_id) in enumerate((i, t) for i, t in items if i.box3d is not None):
        box = instance.box3d
        r, g, b = (float(c) for c in colours[instance.label_index])
        colour = ColorRGBA(r=r, g=g, b=b, a=1.0)
        corners = [Point(x=float(c[0]), y=float(c[1]), z=float(c[2])) for c in box.center + _CORNERS * box.size]
        edges = Marker(header=header, ns=MARKER_NAMESPACE, id=2 * number, type=Marker.LINE_LIST, action=Marker.ADD)
        edges.pose.orientation.w = 1.0
        edges.scale.x = BOX_LINE_WIDTH_M
        edges.color = colour
        edges.points = [corners[k] for edge in _EDGES for k in edge]
        text = Marker(header=header, ns=MARKER_NAMESPACE, id=2 * number + 1, type=Marker.TEXT_VIEW_FACING)
        text.action = Marker.ADD
        # Above the box as the camera sees it: optical y points down.
        text.pose.position = Point(x=box.center[0], y=box.center[1] - box.size[1] / 2 - TEXT_HEIGHT_M, z=box.center[2])
        text.pose.orientation.w = 1.0
        text.scale.z = TEXT_HEIGHT_M
        text.color = colour
        track = f" #{track_id}" if track_id else ""
        text.text = f"{instance.label}{track} {instance.score_max:.2f}"
        markers.extend((edges, text))
    return MarkerArray(markers=markers)


def track_masks(segmentation: Segmentation, shape: tuple[int, int]) -> list[tuple[int, np.ndarray]]:
    """A Segmentation message's tracked objects back as (track id, full-frame bool mask of `shape`): what its
    subscribers score against ground truth; the parts of one object (one id) joined, untracked instances left out."""
    masks: dict[int, np.ndarray] = {}
    for instance in segmentation.instances:
        if not instance.track_id:
            continue
        mask = np.zeros(shape, bool)
        x, y = instance.bbox.x_offset, instance.bbox.y_offset
        mask[y : y + instance.bbox.height, x : x + instance.bbox.width] = image_to_numpy(instance.mask) > 0
        masks[instance.track_id] = masks[instance.track_id] | mask if instance.track_id in masks else mask
    return list(masks.items())

