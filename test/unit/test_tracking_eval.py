"""Tracking against ground truth (clipseg_ros.train.tracking_eval): the generator's promises, and setting 1's
targets scored by motmetrics, beside supervision's ByteTrack on the same detections."""

from __future__ import annotations

import numpy as np
import pytest

from clipseg_ros.perception.tracking import TrackingSettings
from clipseg_ros.train.synthetic_sequence import LABELS, SequenceFrame, SequenceSettings, TrueObject, synthetic_sequence
from clipseg_ros.train.tracking_eval import Faults, faulty_detections, run_bytetrack, run_tracker, score

SETTINGS = SequenceSettings()


@pytest.fixture(scope="module")
def frames():
    return synthetic_sequence(seed=0, settings=SETTINGS)


def test_the_sequence_has_what_trackers_are_tested_on(frames):
    assert len(frames) == 300 and np.allclose(np.diff([f.stamp_s for f in frames]), 1 / SETTINGS.rate_hz)
    seen = {}
    gaps, same_prompt_overlaps = [], 0
    for index, frame in enumerate(frames):
        for obj in frame.objects:
            if obj.id in seen and index - seen[obj.id] > 1:
                gaps.append(index - seen[obj.id] - 1)
            seen[obj.id] = index
            assert frame.depth[obj.mask].min() == pytest.approx(obj.position[2], abs=1e-5)
        boxes = {}
        for obj in frame.objects:
            ys, xs = np.nonzero(obj.mask)
            boxes.setdefault(obj.label, []).append((xs.min(), xs.max()))
        same_prompt_overlaps += any(
            len(b) == 2 and b[0][0] <= b[1][1] and b[1][0] <= b[0][1] for b in boxes.values()
        )
    assert sorted(seen) == list(range(1, 2 * len(LABELS) + 1))
    assert gaps and max(gaps) <= SETTINGS.max_gap_frames  # occlusions and exits, none longer than promised
    assert same_prompt_overlaps >= 5  # two objects of one prompt cross


def test_setting_1_meets_the_targets_and_beats_boxes_alone(frames, capsys):
    detections = faulty_detections(frames, SETTINGS, Faults(), seed=0)
    boxes_only = faulty_detections(frames, SETTINGS, Faults(), seed=0, with_3d=False)
    settings = TrackingSettings()
    ours = score([("ours", frames, run_tracker(frames, detections, settings))])["ours"]
    bytetrack = score([("bytetrack", frames, run_bytetrack(frames, boxes_only, settings))])["bytetrack"]
    with capsys.disabled():
        print(f"\nthis tracker {ours}\nByteTrack    {bytetrack}")
    assert ours["idf1"] >= 0.9 and ours["num_switches"] <= 2
    assert ours["idf1"] > bytetrack["idf1"]


def two_squares(frames: int = 4) -> list[SequenceFrame]:
    """Two still 4 x 4 squares of one prompt in a 12 x 12 view, true ids 1 and 2."""
    masks = [np.zeros((12, 12), bool) for _ in range(2)]
    masks[0][1:5, 1:5] = masks[1][6:10, 6:10] = True
    objects = tuple(TrueObject(k + 1, LABELS[0], mask, (0.0, 0.0, 1.0)) for k, mask in enumerate(masks))
    return [SequenceFrame(t / 15, np.zeros((12, 12, 3), np.uint8), np.ones((12, 12), np.float32), objects)
            for t in range(frames)]


def test_hota_is_one_for_a_perfect_tracker_and_a_swapped_id_lowers_association_only():
    frames = two_squares()
    perfect = [[(7, f.objects[0].mask), (9, f.objects[1].mask)] for f in frames]
    # Halfway the tracker swaps its two ids: every detection still right, each true object half with each id.
    swapped = [[(7, f.objects[t >= 2].mask), (9, f.objects[t < 2].mask)] for t, f in enumerate(frames)]
    scores = score([("perfect", frames, perfect), ("swapped", frames, swapped)])
    assert scores["perfect"]["hota"] == pytest.approx(1.0)
    assert scores["perfect"]["deta"] == pytest.approx(1.0) and scores["perfect"]["assa"] == pytest.approx(1.0)
    swap = scores["swapped"]
    # TrackEval's AssA: each true id shares 2 of its 4 detections with each track id, 2 / (4 + 4 - 2).
    assert swap["deta"] == pytest.approx(1.0) and swap["assa"] == pytest.approx(1 / 3)
    assert swap["hota"] == pytest.approx(np.sqrt(1 / 3))
    assert swap["num_switches"] == 2 and scores["perfect"]["num_switches"] == 0  # motmetrics beside it
    assert scores["OVERALL"]["deta"] == pytest.approx(1.0) and 1 / 3 < scores["OVERALL"]["assa"] < 1.0
