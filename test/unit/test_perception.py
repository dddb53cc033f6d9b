"""Instances, 3D from depth and points on a scene whose geometry the test knows (ray-cast boxes on a plane)."""

from __future__ import annotations

import numpy as np
import pytest
from raycast import depth_input, maps_of

from clipseg_ros.perception import DepthInput, Intrinsics, PerceptionSettings, find_instances, perceive
from clipseg_ros.perception.synthetic_scene import SceneBox, render

COLOUR = Intrinsics(640, 480, 525.0, 525.0, 319.5, 239.5)
PLANE_Z = 1.0
# Off the optical axis so that two side faces of each box face the camera: its full height is in view.
BOXES = (SceneBox((0.15, 0.35), (0.10, 0.25), 0.12), SceneBox((-0.40, -0.20), (-0.30, -0.15), 0.10))


@pytest.fixture(scope="module")
def scene():
    return render(COLOUR, PLANE_Z, BOXES)


def test_instances_2d_match_the_regions(scene):
    probabilities, masks = maps_of(scene.object_id > 0, scene.object_id == 0)
    instances = find_instances(probabilities, masks, ["box", "table"], min_area=100)

    boxes = [i for i in instances if i.label == "box"]
    assert [i.label_index for i in instances] == [0, 0, 1]  # grouped by prompt, in label order
    assert len(boxes) == 2  # two separate objects of one prompt: two instances
    assert boxes[0].area >= boxes[1].area  # largest first
    for instance in boxes:
        x, y, w, h = instance.bbox
        number = scene.object_id[y + h // 2, x + w // 2]
        truth = scene.mask(number)
        rows, cols = np.nonzero(truth)
        assert instance.bbox == (cols.min(), rows.min(), np.ptp(cols) + 1, np.ptp(rows) + 1)
        assert instance.area == truth.sum()
        assert instance.centroid == pytest.approx((cols.mean(), rows.mean()), abs=1e-6)
        np.testing.assert_array_equal(instance.mask, truth[y : y + h, x : x + w])
        inside = probabilities[0][truth]
        assert instance.score_max == pytest.approx(inside.max())
        assert instance.score_mean == pytest.approx(inside.mean(), rel=1e-5)
        assert instance.box3d is None and instance.point_count == 0 and not instance.has_3d


def test_regions_below_the_minimum_area_are_not_instances():
    mask = np.zeros((60, 80), bool)
    mask[5:15, 5:15] = True  # 100 pixels
    mask[40:43, 60:63] = True  # 9 pixels: a speck
    probabilities, masks = maps_of(mask)
    assert [i.area for i in find_instances(probabilities, masks, ["cup"], min_area=100)] == [100]
    assert find_instances(probabilities, masks, ["cup"], min_area=101) == ()
    assert find_instances(probabilities, np.zeros_like(masks), ["cup"], min_area=1) == ()


def test_a_region_inside_another_ones_hole_is_its_own_instance():
    mask = np.zeros((100, 100), bool)
    mask[10:90, 10:90] = True
    mask[25:75, 25:75] = False  # a frame around a hole ...
    mask[40:60, 40:60] = True  # ... with an object in it
    probabilities, masks = maps_of(mask)
    frame, inner = find_instances(probabilities, masks, ["cup"], min_area=100)
    assert (frame.bbox, frame.area) == ((10, 10, 80, 80), 80 * 80 - 50 * 50)
    assert (inner.bbox, inner.area) == ((40, 40, 20, 20), 400)
    assert frame.centroid == pytest.approx((49.5, 49.5)) and not frame.mask[30, 30]


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
@pytest.mark.parametrize("depth_scale", [1.0, 0.5], ids=["same-resolution", "half-resolution"])
def test_3d_of_boxes_on_a_plane(scene, encoding, depth_scale):
    depth_camera = COLOUR.scaled_to(int(COLOUR.width * depth_scale), int(COLOUR.height * depth_scale))
    depth = depth_input(render(depth_camera, PLANE_Z, BOXES).depth, depth_camera, encoding)
    probabilities, masks = maps_of(scene.object_id > 0)

    result = perceive(probabilities, masks, ["box"], PerceptionSettings(), depth, COLOUR)

    assert result.has_depth and len(result.instances) == 2
    for instance in result.instances:
        x, y, w, h = instance.bbox
        number = scene.object_id[y + h // 2, x + w // 2]
        visible = scene.points[scene.mask(number)]  # the surface points the camera sees
        assert instance.has_3d and instance.point_count >= 1000
        box = instance.box3d
        # Centroid: the median of the visible surface, within 1 cm.
        np.testing.assert_allclose(box.centroid, np.median(visible, axis=0), atol=0.01)
        # Box: the box's true width and depth (x, y), and the visible part of its height (z), within 2 cm.
        width, depth_y, _ = BOXES[number - 1].size()
        extent = visible.max(axis=0) - visible.min(axis=0)
        np.testing.assert_allclose(box.size, (width, depth_y, extent[2]), atol=0.02)
        np.testing.assert_allclose(box.center, (visible.max(axis=0) + visible.min(axis=0)) / 2, atol=0.02)
        # The top face at the box's height above the plane.
        assert box.centroid[2] == pytest.approx(PLANE_Z - BOXES[number - 1].height, abs=0.01)


def test_a_mask_spilling_onto_a_far_background_keeps_the_object_box():
    """CLIPSeg masks are coarse: pixels of the wall behind the object must not stretch its box."""
    far = 3.0
    scene = render(COLOUR, far, [SceneBox((0.10, 0.40), (0.05, 0.30), far - 1.0)])  # its top 1 m away
    spilled = np.zeros_like(scene.mask(1))
    rows, cols = np.nonzero(scene.mask(1))
    spilled[rows.min() - 8 : rows.max() + 9, cols.min() - 8 : cols.max() + 9] = True
    probabilities, masks = maps_of(spilled)

    result = perceive(probabilities, masks, ["box"], PerceptionSettings(), depth_input(scene.depth, COLOUR, "32FC1"))

    (instance,) = result.instances
    visible = scene.points[scene.mask(1)]
    np.testing.assert_allclose(instance.box3d.centroid, np.median(visible, axis=0), atol=0.01)
    assert instance.box3d.size[0] == pytest.approx(0.30, abs=0.02)
    assert instance.box3d.size[1] == pytest.approx(0.25, abs=0.02)


def test_without_depth_instances_are_2d_only(scene):
    probabilities, masks = maps_of(scene.object_id > 0)
    result = perceive(probabilities, masks, ["box"], PerceptionSettings())
    assert not result.has_depth and result.points is None
    assert len(result.instances) == 2 and not any(i.has_3d for i in result.instances)


def test_invalid_depth_leaves_3d_unavailable_never_invented(scene):
    probabilities, masks = maps_of(scene.object_id > 0)
    depth = scene.depth.copy()
    depth[scene.mask(1)] = 0.0  # no return from the first box (black, shiny)
    depth[scene.mask(2)] = np.nan
    result = perceive(probabilities, masks, ["box"], PerceptionSettings(), depth_input(depth, COLOUR, "32FC1"))
    assert result.has_depth
    for instance in result.instances:
        assert not instance.has_3d and instance.box3d is None
        assert instance.point_count < PerceptionSettings().min_points


def test_depth_beyond_the_range_is_ignored(scene):
    probabilities, masks = maps_of(scene.object_id > 0)
    depth = depth_input(scene.depth, COLOUR, "32FC1")
    near = PerceptionSettings(depth_min_m=0.1, depth_max_m=0.85)  # both boxes' tops are at 0.88 and 0.90 m
    assert not any(i.has_3d for i in perceive(probabilities, masks, ["box"], near, depth).instances)
    assert len(perceive(probabilities, masks, ["box"], near, depth).points) == 0
    assert all(i.has_3d for i in perceive(probabilities, masks, ["box"], PerceptionSettings(), depth).instances)


def test_too_few_valid_points_is_unavailable(scene):
    probabilities, masks = maps_of(scene.object_id > 0)
    depth = depth_input(scene.depth, COLOUR, "32FC1")
    result = perceive(probabilities, masks, ["box"], PerceptionSettings(min_points=100_000), depth)
    assert [i.has_3d for i in result.instances] == [False, False]
    assert all(i.point_count > 0 for i in result.instances)
    assert all(type(i.point_count) is int for i in result.instances)  # a message field: rclpy aborts on numpy's


def test_colour_intrinsics_default_to_the_depth_camera_scaled():
    """A depth stream aligned to colour at half resolution: its camera_info, scaled, is the colour camera's."""
    depth_camera = COLOUR.scaled_to(320, 240)
    scene = render(COLOUR, PLANE_Z, BOXES)
    probabilities, masks = maps_of(scene.mask(1))
    depth = depth_input(render(depth_camera, PLANE_Z, BOXES).depth, depth_camera, "16UC1")
    with_colour = perceive(probabilities, masks, ["box"], PerceptionSettings(), depth, COLOUR).instances[0]
    without = perceive(probabilities, masks, ["box"], PerceptionSettings(), depth).instances[0]
    assert with_colour.box3d == without.box3d


def test_points_of_selected_prompts_with_stride(scene):
    probabilities, masks = maps_of(scene.object_id > 0, scene.object_id == 0)
    depth = depth_input(scene.depth, COLOUR, "32FC1")
    settings = PerceptionSettings(point_stride=4, point_labels=("box",))

    points = perceive(probabilities, masks, ["box", "table"], settings, depth).points

    grid = scene.object_id[::4, ::4] > 0
    truth = scene.points[::4, ::4][grid]
    assert len(points) > 0
    assert set(points.label_index.tolist()) == {0}
    assert points.xyz.dtype == np.float32 and points.xyz.shape == (len(points), 3)
    assert len(points) <= grid.sum()  # edge samples of the box are dropped as flying pixels
    assert len(points) >= 0.8 * grid.sum()
    # Every point is a true surface point of a box, seen through the grid.
    distances = np.abs(points.xyz[:, None, :] - truth[None, :, :]).max(axis=2).min(axis=1)
    assert distances.max() < 1e-3
    np.testing.assert_array_equal(points.probability >= 0.5, True)

    everything = perceive(probabilities, masks, ["box", "table"], PerceptionSettings(point_stride=8), depth).points
    assert set(everything.label_index.tolist()) == {0, 1}
    assert len(everything) < len(points) * 8  # stride 8 on both: a quarter of the grid of stride 4, two prompts
    unknown = PerceptionSettings(point_labels=("stairs",))  # a label not among the prompts: no points
    assert len(perceive(probabilities, masks, ["box", "table"], unknown, depth).points) == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_area": 0}, "min_area"),
        ({"depth_min_m": 2.0, "depth_max_m": 1.0}, "min < max"),
        ({"depth_max_m": float("nan")}, "depth max"),
        ({"point_stride": 0}, "point_stride"),
        ({"point_stride": 1000}, "point_stride"),
        ({"object_depth_m": 0}, "object_depth_m"),
        ({"point_labels": "cup"}, "point_labels"),
    ],
)
def test_settings_refuse_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        PerceptionSettings(**changes)


def test_bad_inputs_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="not calibrated"):
        Intrinsics.from_k([0.0] * 9, 640, 480)
    with pytest.raises(ValueError, match="9 numbers"):
        Intrinsics.from_k([1.0] * 4, 640, 480)
    with pytest.raises(ValueError, match="not one of"):
        DepthInput(np.zeros((480, 640), np.uint16), "mono16", COLOUR)
    with pytest.raises(ValueError, match="16UC1 depth must be"):
        DepthInput(np.zeros((480, 640), np.float32), "16UC1", COLOUR)
    with pytest.raises(ValueError, match="camera_info is 640x480"):
        DepthInput(np.zeros((240, 320), np.float32), "32FC1", COLOUR)
    probabilities, masks = maps_of(np.ones((48, 64), bool))
    with pytest.raises(ValueError, match="2 labels for 1"):
        perceive(probabilities, masks, ["a", "b"], PerceptionSettings())
    with pytest.raises(ValueError, match="image is 64x48"):
        depth = DepthInput(np.ones((48, 64), np.float32), "32FC1", Intrinsics(64, 48, 50.0, 50.0, 32.0, 24.0))
        perceive(probabilities, masks, ["a"], PerceptionSettings(), depth, COLOUR)
    assert Intrinsics.from_k(np.array([[525, 0, 319.5], [0, 525, 239.5], [0, 0, 1]]), 640, 480) == COLOUR
