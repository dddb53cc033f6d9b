"""The node's outputs for grasping and navigation, across processes: ~/segmentation, ~/points, ~/markers, 3D from a
depth publisher, and the service's instances (issue 11).

The tiny random model's masks mean nothing, so the threshold is set low enough that every pixel of the one prompt
is in its mask: one instance covering the frame. Depth is a flat wall at 1.25 m, so every 3D quantity is known.
What the instances and 3D are on real scenes is tested on numpy arrays (test_perception.py).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from ros_helpers import RELIABLE, NodeProcess, frame, same_stamp, wait_for_service
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from clipseg_ros.msg import Segmentation
from clipseg_ros.ros.image_codec import image_to_numpy, numpy_to_image
from clipseg_ros.srv import Segment

NAME = "clipseg_outputs"
WIDTH, HEIGHT, WALL_MM = 160, 120, 1250
FLOAT32 = 7


def camera_info(seconds: int) -> CameraInfo:
    info = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model="plumb_bob", d=[0.0] * 5)
    info.k = [100.0, 0.0, 80.0, 0.0, 100.0, 60.0, 0.0, 0.0, 1.0]
    info.header = Header(stamp=frame(seconds).header.stamp, frame_id="test_camera")
    return info


def depth_frame(seconds: int) -> Image:
    wall = np.full((HEIGHT, WIDTH), WALL_MM, np.uint16)
    return numpy_to_image(wall, "16UC1", Header(stamp=frame(seconds).header.stamp, frame_id="test_camera"))


@pytest.fixture(scope="module")
def graph(probe, tiny_checkpoint, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outputs")
    params = {
        "weights": str(tiny_checkpoint),
        "device": "cpu",
        "input_size": "[64, 64]",
        "prompts": "[cup]",
        "threshold": "0.01",
        "depth.enabled": "true",
        "depth.sync_tolerance_s": "0.5",  # how long a colour frame may wait for its depth frame, too
        "points.stride": "8",
    }
    node = NodeProcess(tmp, NAME, params)
    try:
        client = wait_for_service(probe, node, Segment, f"/{NAME}/segment")
        publishers = {
            "image": probe.create_publisher(Image, "/image", RELIABLE),
            "camera_info": probe.create_publisher(CameraInfo, "/camera_info", RELIABLE),
            "depth": probe.create_publisher(Image, "/depth/image", RELIABLE),
            "depth_info": probe.create_publisher(CameraInfo, "/depth/camera_info", RELIABLE),
        }
        inboxes = {
            "segmentation": probe.inbox(Segmentation, f"/{NAME}/segmentation"),
            "points": probe.inbox(PointCloud2, f"/{NAME}/points"),
            "markers": probe.inbox(MarkerArray, f"/{NAME}/markers"),
        }
        yield probe, node, client, publishers, inboxes
    finally:
        code = node.stop()
    assert code == 0, node.log()


def send(publishers, inbox, seconds: int, with_depth: bool, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publishers["camera_info"].publish(camera_info(seconds))
        if with_depth:
            publishers["depth_info"].publish(camera_info(seconds))
            publishers["depth"].publish(depth_frame(seconds))
            time.sleep(0.05)  # the depth frame is in the node before its colour frame
        publishers["image"].publish(frame(seconds))
        found = inbox.wait(lambda m: same_stamp(m, seconds), timeout=1.0)
        if found is not None:
            return found
    return None


def test_segmentation_points_and_markers_with_depth(graph):
    probe, node, _, publishers, inboxes = graph
    segmentation = send(publishers, inboxes["segmentation"], 10, with_depth=True)
    assert segmentation is not None, node.log()
    assert segmentation.labels == ["cup"] and segmentation.header.frame_id == "test_camera"
    assert [(m.encoding, m.width, m.height) for m in segmentation.masks] == [("mono8", WIDTH, HEIGHT)]
    assert segmentation.has_depth and len(segmentation.instances) == 1
    [instance] = segmentation.instances
    assert (instance.label_index, instance.label, instance.area) == (0, "cup", WIDTH * HEIGHT)
    assert (instance.bbox.width, instance.bbox.height) == (WIDTH, HEIGHT)
    assert instance.has_3d and instance.point_count >= 20
    assert instance.centroid_3d.z == pytest.approx(WALL_MM / 1000, abs=0.01)
    # The wall seen through fx = fy = 100: x spans (0 - 80) / 100 to (159 - 80) / 100 of the depth.
    assert instance.box_size.x == pytest.approx(1.59 * WALL_MM / 1000, rel=0.05)

    cloud = inboxes["points"].wait(lambda m: same_stamp(m, 10), timeout=5.0)
    assert cloud is not None and cloud.header.frame_id == "test_camera"
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "label", "probability"]
    assert (WIDTH // 8) * (HEIGHT // 8) <= cloud.width <= (WIDTH // 8 + 1) * (HEIGHT // 8 + 1)
    z = np.frombuffer(bytes(cloud.data), dtype=np.float32).reshape(cloud.width, -1)[:, 2]
    assert cloud.fields[2].datatype == FLOAT32 and np.allclose(z, WALL_MM / 1000)

    markers = inboxes["markers"].wait(lambda m: any(same_stamp(k, 10) for k in m.markers), timeout=5.0)
    assert markers is not None and markers.markers[0].action == Marker.DELETEALL
    assert any(m.type == Marker.TEXT_VIEW_FACING and "cup" in m.text for m in markers.markers)


def test_missing_depth_keeps_2d_outputs_and_marks_3d_unavailable(graph):
    probe, node, _, publishers, inboxes = graph
    segmentation = send(publishers, inboxes["segmentation"], 20, with_depth=False)
    assert segmentation is not None, node.log()
    assert not segmentation.has_depth
    assert len(segmentation.instances) == 1 and not segmentation.instances[0].has_3d
    assert inboxes["points"].wait(lambda m: same_stamp(m, 20), timeout=1.0) is None


def test_a_depth_frame_arriving_after_its_colour_frame_still_gives_3d(graph):
    """Depth comes on its own topic, often after colour, and a fast model is done before it arrives: while the depth
    stream is live and behind, the node waits for the frame's depth (at most depth.sync_tolerance_s)."""
    probe, node, _, publishers, inboxes = graph
    # A few tries: on a busy machine one colour frame may be lost, or its depth come later than the wait.
    for seconds in range(30, 35):
        publishers["camera_info"].publish(camera_info(seconds))
        publishers["depth_info"].publish(camera_info(seconds))
        behind = depth_frame(seconds - 1)
        behind.header.stamp.nanosec = 200_000_000  # 0.8 s behind: live, and too far to pair
        publishers["depth"].publish(behind)
        time.sleep(0.2)
        publishers["image"].publish(frame(seconds))
        time.sleep(0.1)  # the tiny model is done with the colour frame by now
        publishers["depth"].publish(depth_frame(seconds))
        segmentation = inboxes["segmentation"].wait(lambda m, s=seconds: same_stamp(m, s), timeout=3.0)
        if segmentation is not None and segmentation.has_depth:
            break
    assert segmentation is not None and segmentation.has_depth, node.log()
    assert segmentation.instances[0].has_3d
    assert segmentation.instances[0].centroid_3d.z == pytest.approx(WALL_MM / 1000, abs=0.01)


def test_service_answers_instances_with_the_request_depth(graph):
    probe, _, client, _, _ = graph
    request = Segment.Request(image=frame(30), prompts=["cup"], threshold=0.01)
    response = probe.call(client, request)
    assert response.success and len(response.instances) == 1 and not response.has_depth
    request.depth, request.camera_info = depth_frame(30), camera_info(30)
    response = probe.call(client, request)
    assert response.success, response.message
    assert response.has_depth and response.instances[0].has_3d
    assert response.instances[0].centroid_3d.z == pytest.approx(WALL_MM / 1000, abs=0.01)
    mask = image_to_numpy(response.instances[0].mask)
    assert mask.shape == (HEIGHT, WIDTH) and mask.max() == 255
    bad = Segment.Request(image=frame(30), prompts=["cup"], depth=depth_frame(30))  # no camera_info for it
    response = probe.call(client, bad)
    assert not response.success and response.message
