"""Every point published as an object's lies on that object (issue 21, item 1), wherever depth and mask disagree.

Ray-cast boxes and cards floating before a wall, each its own prompt, placed at sub-pixel offsets; depth at the
colour size and at other resolutions with their own intrinsics, clean or with flying pixels and holes (0, NaN, inf)
at its edges, in both encodings; masks exact or spilling past the objects. A point counts as on its object when it
lies within 2 cm of the object's surface: the ray of a pixel just off the object's silhouette may read a depth pixel
on the object, and a point there is as good as one on it.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from raycast import box_surface_distance, depth_input, maps_of, spill

from clipseg_ros.engine import limits
from clipseg_ros.perception import Intrinsics, PerceptionSettings, perceive
from clipseg_ros.perception.depth import AlignedDepth
from clipseg_ros.perception.synthetic_scene import SceneBox, render, with_sensor_edges

COLOUR = Intrinsics(640, 480, 525.0, 525.0, 319.5, 239.5)
WALL_Z = 2.1
TOLERANCE_M = 0.02
# Depth cameras registered to the colour camera: its own, half its size, another size, aspect and principal point
# (its view ends short of the colour image's top and bottom rows), and a finer one.
DEPTH_CAMERAS = {
    "colour-size": COLOUR,
    "half": COLOUR.scaled_to(320, 240),
    "424x240": Intrinsics(424, 240, 305.3, 306.1, 212.7, 119.4),
    "960x720": Intrinsics(960, 720, 790.0, 788.0, 481.3, 358.9),
}
# (ray x/z and y/z of the centre, size x, size y, front z, depth): boxes and a card, 0.6 to 1.5 m, down to 4 cm.
OBJECTS = (
    (-0.25, -0.15, 0.18, 0.14, 0.6, 0.07),
    (0.20, -0.10, 0.18, 0.14, 1.0, 0.07),
    (-0.20, 0.20, 0.12, 0.10, 1.2, 0.005),
    (0.25, 0.20, 0.06, 0.06, 1.5, 0.06),
    (0.00, 0.00, 0.04, 0.04, 1.3, 0.04),
)
# Pixels: where the objects' edges fall between pixel centres (each object shifted by another share of this).
PHASES = (0.0, 0.5)
SPILLS = (0, 3, 8)  # pixels the masks run past the objects


@functools.cache
def objects(phase: float) -> tuple[SceneBox, ...]:
    boxes = []
    for k, (u, v, width, height, front, depth) in enumerate(OBJECTS):
        shift = (phase + 0.29 * k) % 1.0
        x, y = u * front + shift * front / COLOUR.fx, v * front + 0.7 * shift * front / COLOUR.fy
        box = SceneBox((x - width / 2, x + width / 2), (y - height / 2, y + height / 2), depth, WALL_Z - front - depth)
        boxes.append(box)
    return tuple(boxes)


@functools.cache
def colour_scene(phase: float):
    return render(COLOUR, WALL_Z, objects(phase))


@functools.cache
def masks(phase: float, spill_px: int) -> tuple[np.ndarray, np.ndarray]:
    scene = colour_scene(phase)
    return maps_of(*(spill(scene.mask(k), spill_px) for k in range(1, len(OBJECTS) + 1)))


@functools.cache
def depth_image(phase: float, camera: str, sensor_edges: bool) -> np.ndarray:
    depth = render(DEPTH_CAMERAS[camera], WALL_Z, objects(phase)).depth
    return with_sensor_edges(depth, np.random.default_rng(7), flying=0.5, holes=0.3) if sensor_edges else depth


def points(phase: float, camera: str, sensor_edges: bool, encoding: str, spill_px: int, stride: int):
    depth = depth_input(depth_image(phase, camera, sensor_edges), DEPTH_CAMERAS[camera], encoding)
    probabilities, masks_ = masks(phase, spill_px)
    labels = [f"object{k}" for k in range(len(OBJECTS))]
    return perceive(probabilities, masks_, labels, PerceptionSettings(point_stride=stride), depth, COLOUR).points


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
@pytest.mark.parametrize("sensor_edges", [False, True], ids=["exact-depth", "flying-pixels-and-holes"])
@pytest.mark.parametrize("camera", DEPTH_CAMERAS)
def test_every_point_of_an_object_lies_on_its_surface(camera, sensor_edges, encoding):
    kept, visible = 0, 0
    for phase, spill_px in itertools.product(PHASES, SPILLS):
        found = points(phase, camera, sensor_edges, encoding, spill_px, stride=1)
        truth = colour_scene(phase)
        for k, box in enumerate(objects(phase)):
            xyz = found.xyz[found.label_index == k].astype(np.float64)
            distance = box_surface_distance(xyz, *box.corners(WALL_Z))
            worst = distance.max(initial=0.0)
            assert worst <= TOLERANCE_M, f"object {k}, phase {phase}, spill {spill_px}: a point {worst:.3f} m off it"
            kept += len(xyz)
            visible += np.count_nonzero(truth.mask(k + 1))
    # Not by dropping everything: exact depth keeps most of the objects' pixels, even the edges' damage half.
    assert kept >= (0.75 if not sensor_edges else 0.5) * visible


def test_points_at_every_stride_are_those_at_stride_1_on_the_grid():
    """The 2-cm rule at stride 1 holds at every stride: a stride only picks pixels, never lets others in."""
    camera, phase = "424x240", 0.5

    def pixels(stride: int) -> set[tuple[int, int, int]]:
        found = points(phase, camera, True, "32FC1", 3, stride)
        u = np.rint(found.xyz[:, 0] / found.xyz[:, 2] * COLOUR.fx + COLOUR.cx).astype(int)
        v = np.rint(found.xyz[:, 1] / found.xyz[:, 2] * COLOUR.fy + COLOUR.cy).astype(int)
        return set(zip(u.tolist(), v.tolist(), found.label_index.tolist(), strict=True))

    every = pixels(1)
    assert len(every) > 10_000
    for stride in range(2, limits.MAX_POINT_STRIDE + 1):
        assert pixels(stride) == {(u, v, k) for u, v, k in every if u % stride == 0 and v % stride == 0}, stride


def aligned(depth_m: np.ndarray) -> AlignedDepth:
    camera = Intrinsics(depth_m.shape[1], depth_m.shape[0], 100.0, 100.0, 4.0, 4.0)
    return AlignedDepth(depth_input(depth_m, camera, "32FC1"), camera, 0.1, 10.0)


def test_a_sample_stepping_to_a_diagonal_neighbour_is_an_edge():
    """An object's corner: the wall pixel beyond it touches the object only across the diagonal. The wall's side of
    the step is dropped (a flying pixel would be there); the object's corner is the object's, kept."""
    depth = np.full((9, 9), 2.0, np.float32)
    depth[:4, :4] = 1.0
    z, _ = aligned(depth).read(slice(None), slice(None))
    assert np.isnan(z[4, 4]) and np.isnan(z[4, 0]) and np.isnan(z[0, 4])  # every wall sample touching the object
    assert z[3, 3] == z[3, 0] == z[0, 3] == 1.0  # the object up to its last sample
    assert z[5, 5] == 2.0 and z[2, 2] == 1.0


def test_a_flying_pixel_between_holes_is_compared_with_the_surface_beyond_them():
    """A sample 4 % behind the object, whose other neighbours are holes: the wall two pixels away gives it away."""
    depth = np.full((9, 9), 2.0, np.float32)
    depth[:, :4] = 1.0
    depth[:, 4:6] = 0.0  # the sensor lost the edge ...
    depth[4, 4] = 1.04  # ... but for one sample mixing the object with the wall
    z, _ = aligned(depth).read(slice(None), slice(None))
    assert np.isnan(z[4, 4])
    assert z[4, 3] == 1.0 and z[4, 7] == 2.0  # the surfaces on either side are kept


def test_holes_alone_are_not_edges():
    """Holes in a continuous surface (16UC1 zeros on a slanted floor) drop no valid sample beside them."""
    rows = np.arange(40, dtype=np.float32)[:, None]
    depth = np.repeat(1.0 * 1.03**rows, 40, axis=1).astype(np.float32)  # 3 % deeper per row
    holes = np.random.default_rng(1).random(depth.shape) < 0.2
    depth[holes] = 0.0
    z, surface = aligned(depth).read(slice(None), slice(None))
    np.testing.assert_array_equal(np.isnan(z), holes)
    assert len(np.unique(surface[~holes])) == 1  # one continuous surface, holes and all


def test_a_depth_edge_separates_surfaces():
    depth = np.full((20, 20), 2.0, np.float32)
    depth[5:12, 5:12] = 1.5  # a card 0.5 m before the wall
    z, surface = aligned(depth).read(slice(None), slice(None))
    assert surface[8, 8] != surface[1, 1] and surface[8, 8] == surface[6, 6]
    assert surface[1, 1] == surface[18, 18]  # the wall all round it is one surface
