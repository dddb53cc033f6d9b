"""An instance's 3D is the object in front, not the background its mask spills onto (issue 21, item 2).

Ray-cast objects floating before a wall; the truth is the surface the colour camera sees of the object: the
per-axis median of its points (the centroid) and their extent (the box).
"""

from __future__ import annotations

import numpy as np
import pytest
from raycast import box_surface_distance, depth_input, maps_of, spill

from clipseg_ros.perception import Intrinsics, PerceptionSettings, perceive
from clipseg_ros.perception.synthetic_scene import SceneBox, render, with_sensor_edges

COLOUR = Intrinsics(640, 480, 525.0, 525.0, 319.5, 239.5)
DEPTH_CAMERAS = {
    "colour-size": COLOUR,
    "half": COLOUR.scaled_to(320, 240),
    "424x240": Intrinsics(424, 240, 305.3, 306.1, 212.7, 119.4),
}


def floating(x: float, y: float, size: tuple[float, float, float], front: float, wall: float) -> SceneBox:
    """A box whose near face is `front` metres away, its lowest corner at (x, y), before a wall at `wall`."""
    width, height, depth = size
    return SceneBox((x, x + width), (y, y + height), depth, wall - front - depth)


def perceive_one(box: SceneBox, wall: float, spill_px: int, camera: str, encoding: str = "32FC1", damage=None):
    """The one instance of the box's (spilled) mask, its points, the colour camera's view of the box, its mask."""
    scene = render(COLOUR, wall, [box])
    depth = render(DEPTH_CAMERAS[camera], wall, [box]).depth
    if damage is not None:
        depth = damage(depth)
    mask = spill(scene.mask(1), spill_px)
    probabilities, masks = maps_of(mask)
    frame = depth_input(depth, DEPTH_CAMERAS[camera], encoding)
    result = perceive(probabilities, masks, ["object"], PerceptionSettings(), frame, COLOUR)
    (instance,) = result.instances
    return instance, result.points, scene.points[scene.mask(1)], mask


@pytest.mark.parametrize("camera", DEPTH_CAMERAS)
@pytest.mark.parametrize(
    ("size", "front", "spill_px"),
    [(0.06, 1.5, 7), (0.04, 1.2, 6), (0.03, 0.8, 6)],
    ids=["6cm-at-1.5m", "4cm-at-1.2m", "3cm-at-0.8m"],
)
def test_a_small_object_is_found_in_front_of_the_wall_its_mask_spills_onto(camera, size, front, spill_px):
    wall = front + 0.6
    box = floating(0.12 * front, 0.05 * front + 0.3 * front / COLOUR.fy, (size, size, size), front, wall)
    instance, points, visible, mask = perceive_one(box, wall, spill_px, camera, "16UC1")

    share = len(visible) / np.count_nonzero(mask)
    assert share < 0.45  # most of the mask lies on the wall: its median depth is the wall's
    assert instance.has_3d
    np.testing.assert_allclose(instance.box3d.centroid, np.median(visible, axis=0), atol=0.02)
    assert instance.box3d.centroid[2] == pytest.approx(np.median(visible[:, 2]), abs=0.005)
    # Its points follow the same rule: none of the wall.
    assert len(points) > 0
    assert box_surface_distance(points.xyz.astype(np.float64), *box.corners(wall)).max() <= 0.02


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
@pytest.mark.parametrize("camera", DEPTH_CAMERAS)
@pytest.mark.parametrize("spill_px", [0, 4, 8])
@pytest.mark.parametrize("corner", [(0.30, 0.20), (-0.09, -0.07)], ids=["sides-in-view", "facing"])
def test_a_wall_behind_a_box_within_object_depth_m_is_not_merged_into_it(corner, spill_px, camera, encoding):
    """An 18x14x7 cm box 0.9 m away, the wall 0.25 m behind it: within object_depth_m (0.5 m) of it."""
    front, wall = 0.9, 0.9 + 0.07 + 0.25
    assert wall - front < PerceptionSettings().object_depth_m
    box = floating(*corner, (0.18, 0.14, 0.07), front, wall)
    instance, points, visible, _ = perceive_one(box, wall, spill_px, camera, encoding)

    extent = visible.max(axis=0) - visible.min(axis=0)
    np.testing.assert_allclose(instance.box3d.size, extent, atol=0.02)
    np.testing.assert_allclose(instance.box3d.centroid, np.median(visible, axis=0), atol=0.005)
    assert box_surface_distance(points.xyz.astype(np.float64), *box.corners(wall)).max() <= 0.02


def sensor_edges(depth: np.ndarray) -> np.ndarray:
    return with_sensor_edges(depth, np.random.default_rng(5), flying=0.5, holes=0.3)


def random_holes(depth: np.ndarray) -> np.ndarray:
    """16UC1 zeros scattered over the whole frame (a fifth of it), as stereo cameras give on low texture."""
    return np.where(np.random.default_rng(6).random(depth.shape) < 0.2, 0.0, depth).astype(np.float32)


@pytest.mark.parametrize("front", [0.6, 0.9, 1.2, 1.5])
@pytest.mark.parametrize(
    ("camera", "encoding", "spill_px", "damage"),
    [
        ("colour-size", "32FC1", 0, None),
        ("half", "32FC1", 0, None),
        ("424x240", "16UC1", 0, None),
        ("colour-size", "16UC1", 0, random_holes),
        ("colour-size", "32FC1", 8, None),
        ("colour-size", "32FC1", 0, sensor_edges),
        ("half", "16UC1", 4, sensor_edges),
    ],
    ids=["exact", "half-resolution", "424x240-16UC1", "16UC1-holes", "8px-spill", "flying-nan-inf", "all-at-once"],
)
def test_centroids_within_half_a_centimetre(front, camera, encoding, spill_px, damage):
    wall = 2.2
    box = floating(0.1 * front, 0.05 * front, (0.15, 0.12, 0.08), front, wall)
    instance, _, visible, _ = perceive_one(box, wall, spill_px, camera, encoding, damage)
    np.testing.assert_allclose(instance.box3d.centroid, np.median(visible, axis=0), atol=0.005)


def test_an_object_whose_depth_is_lost_has_no_3d_rather_than_the_walls():
    """A black object gives no depth, or a few samples through the holes and flying pixels at its edges: the
    wall around it under the spilled mask is not its 3D, and none of its points are published."""
    front, wall = 1.3, 2.1
    box = floating(0.05, 0.05, (0.08, 0.08, 0.08), front, wall)

    def lost(depth: np.ndarray) -> np.ndarray:
        return np.where(render(DEPTH_CAMERAS["half"], wall, [box]).object_id == 1, 0.0, depth).astype(np.float32)

    def nearly_lost(depth: np.ndarray) -> np.ndarray:
        kept = np.random.default_rng(2).random(depth.shape) < 0.15
        return np.where(kept, depth, lost(depth)).astype(np.float32)

    for damage in (lost, nearly_lost):
        instance, points, _, _ = perceive_one(box, wall, 8, "half", "16UC1", damage)
        assert not instance.has_3d and len(points) == 0, damage.__name__
    instance, points, _, _ = perceive_one(box, wall, 8, "half", "16UC1")
    assert instance.has_3d and len(points) > 0  # the same scene with its depth: found


@pytest.mark.parametrize(("patch", "found"), [(0.01, True), (0.03, False)], ids=["1cm", "3cm"])
def test_something_small_in_front_is_left_out_and_something_larger_makes_the_3d_unknown(patch, found):
    """A thing 0.4 m in front of the object, under its mask: at 1 cm (under OBJECT_AHEAD_MAX_SHARE of the mask's
    depth) it is neither the object nor a reason to give up; at 3 cm (6 %: not the object, too much to ignore) it
    may be an object too poorly measured to be found, and the instance has no 3D."""
    front, wall = 1.0, 1.6
    box = floating(0.05, 0.05, (0.20, 0.15, 0.10), front, wall)
    thing = floating(0.09 - patch / 2, 0.075 - patch / 2, (patch, patch, 0.01), 0.6, wall)  # before the box's middle
    scene = render(COLOUR, wall, [box, thing])
    probabilities, masks = maps_of(spill(scene.mask(1) | scene.mask(2), 4))
    frame = depth_input(scene.depth, COLOUR, "16UC1")
    (instance,) = perceive(probabilities, masks, ["object"], PerceptionSettings(), frame, COLOUR).instances
    assert instance.has_3d == found
    if found:
        np.testing.assert_allclose(instance.box3d.centroid, np.median(scene.points[scene.mask(1)], axis=0), atol=0.005)
