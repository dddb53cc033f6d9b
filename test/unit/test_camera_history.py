"""What a camera of the node remembers between frames (perception/camera_history.py) and the maps it publishes
(engine/frame_maps.py): steady masks, then exclusions, then tracks; ids shared between cameras; the service's ids."""

from __future__ import annotations

import itertools

import numpy as np

from clipseg_ros.engine.frame_maps import published_maps
from clipseg_ros.engine.overlay import draw_tracks
from clipseg_ros.engine.segmenter import SegmentationResult
from clipseg_ros.perception import find_instances
from clipseg_ros.perception.camera_history import CameraHistory
from clipseg_ros.perception.temporal_filter import TemporalSettings
from clipseg_ros.perception.tracking import TrackingSettings

SIZE = 48


def square(x: int, y: int, side: int = 12, value: float = 0.9) -> np.ndarray:
    p = np.full((SIZE, SIZE), 0.05, np.float32)
    p[y : y + side, x : x + side] = value
    return p


def history(ids=None, temporal: bool = False, min_hits: int = 1) -> CameraHistory:
    return CameraHistory(
        TrackingSettings(min_hits=min_hits), TemporalSettings(enabled=temporal), ids or itertools.count(1)
    )


def step(camera: CameraHistory, stamp: float, labels, maps: list[np.ndarray]):
    published = camera.maps(stamp, labels, np.stack(maps), 0.5)
    instances = find_instances(published.probabilities, published.masks, published.labels, 10)
    return published, camera.track(stamp, published.labels, instances)


def test_a_moving_square_keeps_its_id_and_cameras_never_share_one():
    ids = itertools.count(1)
    front, left = history(ids), history(ids)
    seen_front = [step(front, t, ["cup"], [square(4 + 3 * t, 10)])[1][0].track_id for t in range(5)]
    seen_left = [step(left, t, ["cup"], [square(30 - 3 * t, 20)])[1][0].track_id for t in range(5)]
    assert len(set(seen_front)) == 1 and len(set(seen_left)) == 1 and seen_front[0] != seen_left[0]
    front.reset()  # deactivate: tracks end, ids go on
    [again] = step(front, 10, ["cup"], [square(4, 10)])[1]
    assert again.track_id not in (seen_front[0], seen_left[0])
    front.end_prompts(["cup"])  # a visual prompt replaced under the same label
    assert step(front, 11, ["cup"], [square(4, 10)])[1][0].track_id not in (again.track_id, seen_left[0])


def test_exclusions_are_applied_after_steady_masks_and_before_instances():
    camera = history()
    hand = square(20, 10)
    cup = np.maximum(square(4, 10, side=30), 0.05)
    published, tracked = step(camera, 0, ["cup", "-hand"], [cup, hand])
    assert published.labels == ("cup",) and published.exclusions == ("hand",)
    assert not published.masks[0][10:22, 20:32].any() and published.masks[0][10:22, 4:20].all()
    assert all(t.instance.mask.sum() == t.instance.area for t in tracked)
    assert sum(t.instance.area for t in tracked) == published.masks[0].sum()


def test_steady_masks_average_only_when_on_and_restart_when_turned_on():
    camera = history()
    low, high = np.full((1, SIZE, SIZE), 0.2, np.float32), np.full((1, SIZE, SIZE), 0.9, np.float32)
    assert camera.maps(0, ["cup"], low, 0.5).probabilities is not None
    assert np.allclose(camera.maps(1, ["cup"], high, 0.5).probabilities, 0.9)  # off: as they are
    on = TemporalSettings(enabled=True, smoothing=0.5, on_threshold=0.5, off_threshold=0.4)
    camera.configure(TrackingSettings(), on)
    assert np.allclose(camera.maps(2, ["cup"], low, 0.5).probabilities, 0.2)  # a fresh start
    steadied = camera.maps(3, ["cup"], high, 0.5)
    assert np.allclose(steadied.probabilities, 0.55) and steadied.masks.all()


def test_the_service_gets_the_ids_of_the_last_tracked_frame_only():
    camera = history()
    for t in range(3):
        _, tracked = step(camera, t, ["cup"], [square(4 + 2 * t, 10)])
    again = find_instances(np.stack([square(8, 10)]), np.stack([square(8, 10)]) >= 0.5, ["cup"], 10)
    assert [t.track_id for t in camera.tracks_for(2, again)] == [tracked[0].track_id]
    assert [t.track_id for t in camera.tracks_for(1, again)] == [0]  # not the last frame tracked
    elsewhere = find_instances(np.stack([square(30, 30)]), np.stack([square(30, 30)]) >= 0.5, ["cup"], 10)
    assert [t.track_id for t in camera.tracks_for(2, elsewhere)] == [0]  # not one of that frame's objects
    camera.configure(TrackingSettings(enabled=False), TemporalSettings())
    assert [t.track_id for t in step(camera, 3, ["cup"], [square(10, 10)])[1]] == [0]
    assert [t.track_id for t in camera.tracks_for(3, again)] == [0]


def test_published_maps_label_image_is_the_segmenters_without_exclusions_and_follows_steady_masks():
    rng = np.random.default_rng(0)
    probabilities = rng.random((3, 20, 30), dtype=np.float32)
    result = SegmentationResult(["a", "b", "c"], probabilities, 0.5)
    maps = published_maps(result.labels, probabilities, result.masks, 0.5)
    assert np.array_equal(maps.label_image(), result.label_image()) and np.allclose(maps.scores, result.scores)
    held = np.zeros_like(result.masks)
    held[1] = True  # a steady mask holding a pixel its probability alone would not
    assert (published_maps(result.labels, probabilities, held, 0.5).label_image() == 2).all()


def test_draw_tracks_writes_the_id_and_the_trail_in_the_prompts_colour():
    image = np.zeros((120, 160, 3), np.uint8)
    draw_tracks(image, [(7, 0, [(20.0, 20.0), (60.0, 30.0), (100.0, 40.0)]), (8, 1, [])])
    assert image[30, 60].any()  # on the trail
    white = (image > 200).all(axis=2)  # the tag's text, below its last position
    assert white.any() and np.nonzero(white)[0].min() > 40 and np.nonzero(white)[1].min() > 60
