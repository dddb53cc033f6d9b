"""Results -> messages, read back the way a subscriber would (through serialization, PointCloud2 with numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from clipseg_ros.engine.segmenter import SegmentationResult
from clipseg_ros.perception import DepthInput, Intrinsics, PerceptionSettings, perceive
from clipseg_ros.perception.synthetic_scene import SceneBox, render
from clipseg_ros.ros.image_codec import image_to_numpy
from clipseg_ros.ros.messages import instance_messages, marker_array, point_cloud, segmentation_message
from clipseg_ros.srv import Segment

COLOUR = Intrinsics(640, 480, 525.0, 525.0, 319.5, 239.5)
BOXES = (SceneBox((0.15, 0.35), (0.10, 0.25), 0.12), SceneBox((-0.40, -0.20), (-0.30, -0.15), 0.10))
HEADER = Header(stamp=Time(sec=1700000000, nanosec=123456789), frame_id="camera_color_optical_frame")
NUMPY_TYPES = {PointField.FLOAT32: np.float32, PointField.UINT32: np.uint32}


@pytest.fixture(scope="module")
def frame():
    scene = render(COLOUR, 1.0, BOXES)
    probabilities = np.stack([np.where(scene.object_id > 0, 0.9, 0.1), np.where(scene.object_id == 0, 0.7, 0.2),
                              np.full(scene.depth.shape, 0.05)]).astype(np.float32)
    result = SegmentationResult(["box", "table", "stairs"], probabilities, threshold=0.5)
    depth = DepthInput(scene.depth, "32FC1", COLOUR)
    perception = perceive(result.probabilities, result.masks, result.labels, PerceptionSettings(), depth, COLOUR)
    return result, perception


def round_trip(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def test_segmentation_message_reads_back(frame):
    result, perception = frame
    msg = round_trip(segmentation_message(HEADER, result, perception))

    assert msg.header == HEADER
    assert list(msg.labels) == ["box", "table", "stairs"]
    assert msg.threshold == pytest.approx(0.5) and msg.has_depth
    assert list(msg.probabilities) == []  # only when asked
    np.testing.assert_allclose(msg.scores, result.scores)
    for mask_msg, mask in zip(msg.masks, result.masks, strict=True):
        assert mask_msg.encoding == "mono8" and mask_msg.header == HEADER
        np.testing.assert_array_equal(image_to_numpy(mask_msg), np.where(mask, 255, 0))

    assert [(i.label_index, i.label) for i in msg.instances] == [(0, "box"), (0, "box"), (1, "table")]
    for instance_msg, instance in zip(msg.instances, perception.instances, strict=True):
        assert (instance_msg.bbox.x_offset, instance_msg.bbox.y_offset) == instance.bbox[:2]
        assert (instance_msg.bbox.width, instance_msg.bbox.height) == instance.bbox[2:]
        assert instance_msg.area == instance.area
        assert (instance_msg.centroid_x, instance_msg.centroid_y) == pytest.approx(instance.centroid)
        assert instance_msg.score_max == pytest.approx(instance.score_max)
        assert instance_msg.score_mean == pytest.approx(instance.score_mean)
        np.testing.assert_array_equal(image_to_numpy(instance_msg.mask) > 0, instance.mask)
        assert instance_msg.has_3d and instance_msg.point_count == instance.point_count
        c = instance_msg.centroid_3d
        assert (c.x, c.y, c.z) == pytest.approx(instance.box3d.centroid)
        s = instance_msg.box_size
        assert (s.x, s.y, s.z) == pytest.approx(instance.box3d.size)

    with_probabilities = segmentation_message(HEADER, result, perception, with_probabilities=True)
    assert [p.encoding for p in with_probabilities.probabilities] == ["32FC1"] * 3
    np.testing.assert_array_equal(image_to_numpy(with_probabilities.probabilities[1]), result.probabilities[1])


def test_without_depth_the_message_says_so(frame):
    result, _ = frame
    perception = perceive(result.probabilities, result.masks, result.labels, PerceptionSettings())
    msg = round_trip(segmentation_message(HEADER, result, perception))
    assert not msg.has_depth and len(msg.instances) == 3
    assert not any(i.has_3d for i in msg.instances)
    assert all(i.point_count == 0 and i.centroid_3d.z == 0.0 for i in msg.instances)
    assert marker_array(HEADER, result.labels, perception.instances).markers[0].action == Marker.DELETEALL
    assert len(marker_array(HEADER, result.labels, perception.instances).markers) == 1


def test_the_service_response_takes_the_instances(frame):
    result, perception = frame
    response = Segment.Response(header=HEADER, labels=list(result.labels))
    response.instances = instance_messages(HEADER, perception.instances)
    response.has_depth = perception.has_depth
    assert [i.label for i in round_trip(response).instances] == ["box", "box", "table"]


def test_point_cloud_decodes_with_numpy(frame):
    _, perception = frame
    points = perception.points
    msg = round_trip(point_cloud(HEADER, points))

    assert msg.header == HEADER and msg.height == 1 and msg.width == len(points) and msg.is_dense
    assert [f.name for f in msg.fields] == ["x", "y", "z", "label", "probability"]
    dtype = np.dtype({
        "names": [f.name for f in msg.fields],
        "formats": [NUMPY_TYPES[f.datatype] for f in msg.fields],
        "offsets": [f.offset for f in msg.fields],
        "itemsize": msg.point_step,
    })
    assert msg.row_step == msg.point_step * msg.width and not msg.is_bigendian
    cloud = np.frombuffer(bytes(msg.data), dtype=dtype)
    np.testing.assert_array_equal(np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1), points.xyz)
    np.testing.assert_array_equal(cloud["label"], points.label_index)
    np.testing.assert_array_equal(cloud["probability"], points.probability)
    assert set(cloud["label"].tolist()) == {0, 1}  # "stairs" has no pixel above the threshold

    empty = round_trip(point_cloud(HEADER, perceive(*_no_pixels(), PerceptionSettings(), _flat_depth()).points))
    assert empty.width == 0 and len(empty.data) == 0 and len(empty.fields) == 5


def test_markers_box_and_label_each_3d_instance(frame):
    result, perception = frame
    msg = round_trip(marker_array(HEADER, result.labels, perception.instances))
    assert isinstance(msg, MarkerArray)
    assert msg.markers[0].action == Marker.DELETEALL  # stale boxes of the last frame vanish
    boxes = [m for m in msg.markers if m.type == Marker.LINE_LIST]
    texts = [m for m in msg.markers if m.type == Marker.TEXT_VIEW_FACING]
    assert len(boxes) == len(texts) == 3
    assert len({(m.ns, m.id) for m in msg.markers[1:]}) == 6
    for box_marker, text, instance in zip(boxes, texts, perception.instances, strict=True):
        assert box_marker.header == HEADER and text.header == HEADER
        corners = np.array([(p.x, p.y, p.z) for p in box_marker.points])
        assert corners.shape == (24, 3)  # 12 edges
        center, size = np.array(instance.box3d.center), np.array(instance.box3d.size)
        np.testing.assert_allclose(corners.min(axis=0), center - size / 2, atol=1e-9)
        np.testing.assert_allclose(corners.max(axis=0), center + size / 2, atol=1e-9)
        edge_lengths = np.linalg.norm(corners[0::2] - corners[1::2], axis=1)
        assert sorted(np.round(edge_lengths, 9).tolist()) == sorted(np.round(np.repeat(size, 4), 9).tolist())
        assert text.text.startswith(instance.label + " ")
    assert boxes[0].color != boxes[2].color  # a colour per label


def _no_pixels():
    probabilities = np.zeros((1, 48, 64), np.float32)
    return probabilities, probabilities >= 0.5, ["cup"]


def _flat_depth() -> DepthInput:
    return DepthInput(np.ones((48, 64), np.float32), "32FC1", Intrinsics(64, 48, 50.0, 50.0, 32.0, 24.0))

