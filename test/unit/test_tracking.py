"""The tracker's rules (clipseg_ros.perception.tracking), each on instances whose masks and 3D are known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from clipseg_ros.perception.instances import Box3D, Instance
from clipseg_ros.perception.tracking import Tracker, TrackingSettings

CUP, HAND = "cup", "hand"


def square(x: int, y: int, side: int = 10, label: str = CUP, at: tuple[float, float, float] | None = None) -> Instance:
    """A square instance at pixel (x, y); at: its 3D centre (None: no depth)."""
    box3d = None if at is None else Box3D(at, at, (0.1, 0.1, 0.1))
    return Instance(
        label_index=0,
        label=label,
        score_max=0.9,
        score_mean=0.8,
        bbox=(x, y, side, side),
        area=side * side,
        centroid=(x + side / 2, y + side / 2),
        mask=np.ones((side, side), bool),
        point_count=0 if at is None else side * side,
        box3d=box3d,
    )


def run(tracker: Tracker, frames, labels=(CUP,), rate_hz: float = 10.0, start_s: float = 0.0):
    """Each frame's track ids."""
    return [[t.track_id for t in tracker.update(start_s + i / rate_hz, labels, f)] for i, f in enumerate(frames)]


def test_a_track_is_reported_from_its_min_hits_th_frame():
    ids = run(Tracker(TrackingSettings(min_hits=3)), [[square(10 + i, 10)] for i in range(4)])
    assert ids[0] == ids[1] == [0] and ids[2][0] > 0 and ids[3] == ids[2]


def test_a_blob_seen_once_is_never_a_track_and_its_id_is_not_given_again():
    tracker = Tracker(TrackingSettings(min_hits=2))
    ids = run(tracker, [[square(10, 10)], [], [square(10, 10)], [square(10, 10)]])
    assert ids == [[0], [], [0], [ids[3][0]]]
    assert ids[3][0] == 2  # the first blob used id 1


def test_each_unmatched_instance_gets_a_new_id_and_ids_are_never_reused():
    tracker = Tracker(TrackingSettings(min_hits=1, max_missed_frames=0))
    first = run(tracker, [[square(0, 0), square(50, 50)]])[0]
    assert len(set(first)) == 2 and 0 not in first
    later = run(tracker, [[], [square(0, 0), square(50, 50)]], start_s=1.0)  # both ended by the empty frame
    assert set(later[1]).isdisjoint(first)
    tracker.reset()
    assert set(run(tracker, [[square(0, 0)]])[0]).isdisjoint(first + later[1])


def test_a_track_outlives_max_missed_frames_and_ends_after_more():
    settings = TrackingSettings(min_hits=1, max_missed_frames=2)
    seen = [[square(10, 10)]]
    kept = run(Tracker(settings), seen + [[], []] + seen)
    ended = run(Tracker(settings), seen + [[], [], []] + seen)
    assert kept[3] == kept[0]
    assert ended[4] != ended[0]


def test_trackers_sharing_an_id_source_never_give_the_same_id():
    ids = itertools.count(1)
    left, right = Tracker(TrackingSettings(min_hits=1), ids), Tracker(TrackingSettings(min_hits=1), ids)
    a = run(left, [[square(0, 0)]])[0]
    b = run(right, [[square(0, 0)]])[0]
    assert a != b


def test_a_prompt_removed_or_changed_ends_its_tracks_only():
    tracker = Tracker(TrackingSettings(min_hits=1))
    both = (CUP, HAND)
    start = run(tracker, [[square(0, 0), square(50, 50, label=HAND)]], both)[0]
    without_hand = tracker.update(0.1, (CUP,), [square(0, 0)])
    back = tracker.update(0.2, both, [square(0, 0), square(50, 50, label=HAND)])
    assert without_hand[0].track_id == start[0] == back[0].track_id
    assert back[1].track_id != start[1]
    tracker.end_prompts([CUP])  # a visual prompt replaced under its label
    assert tracker.update(0.3, both, [square(0, 0)])[0].track_id not in start


def test_prompts_never_share_a_track():
    tracker = Tracker(TrackingSettings(min_hits=1))
    cup, hand = tracker.update(0.0, (CUP, HAND), [square(0, 0), square(0, 0, label=HAND)])
    cup2, hand2 = tracker.update(0.1, (CUP, HAND), [square(0, 0), square(0, 0, label=HAND)])
    assert cup.track_id != hand.track_id and (cup2.track_id, hand2.track_id) == (cup.track_id, hand.track_id)


def test_new_tracks_draw_their_ids_in_prompt_order():
    """The same frames give the same ids in every process: ids follow the prompts' order, not a set's (whose order
    of strings changes with the hash seed; with 12 prompts a set's order is the given one once in millions)."""
    labels = tuple(f"object {n}" for n in range(12))
    tracked = Tracker(TrackingSettings(min_hits=1)).update(0.0, labels, [square(0, 0, label=label) for label in labels])
    assert [t.track_id for t in tracked] == list(range(1, 13))


def test_reset_and_a_stamp_going_back_end_every_track():
    tracker = Tracker(TrackingSettings(min_hits=1))
    first = tracker.update(5.0, (CUP,), [square(0, 0)])[0].track_id
    replayed = tracker.update(1.0, (CUP,), [square(0, 0)])[0].track_id  # a bag played again
    tracker.reset()
    after_reset = tracker.update(2.0, (CUP,), [square(0, 0)])[0].track_id
    assert len({first, replayed, after_reset}) == 3


def test_a_frame_sent_again_with_its_stamp_is_no_new_frame():
    tracker = Tracker(TrackingSettings(min_hits=3, max_missed_frames=0))
    stamps = [0.0, 0.0, 0.1, 0.1, 0.2]  # the first two frames each sent twice (a resend, a republished frame)
    reports = [tracker.update(stamp, (CUP,), [square(10, 10)])[0] for stamp in stamps]
    assert [r.track_id for r in reports[:4]] == [0, 0, 0, 0]  # two frames seen, not four: not reported yet
    assert reports[4].track_id > 0 and reports[4].age_frames == 2
    assert tracker.update(0.2, (CUP,), []) == ()  # the same frame again without it: no miss
    assert tracker.update(0.3, (CUP,), [square(10, 10)])[0].track_id == reports[4].track_id


def test_velocity_comes_from_stamps_in_metres_per_second_and_age_in_frames_and_seconds():
    tracker = Tracker(TrackingSettings(min_hits=1, velocity_smoothing=0.5))
    stamps = [0.0, 0.1, 0.3, 0.35, 0.6]  # irregular, as frames dropped on the way give them
    reports = []
    for stamp in stamps:
        x = 0.5 * stamp  # 0.5 m/s to the right, 2 m away
        pixel = int(round(100 * x))
        reports.append(tracker.update(stamp, (CUP,), [square(pixel, 10, at=(x, 0.0, 2.0))])[0])
    assert reports[0].velocity is None  # one position: no velocity yet
    for report in reports[1:]:
        assert report.velocity == pytest.approx((0.5, 0.0, 0.0))
    assert (reports[-1].age_frames, reports[-1].age_s) == (4, pytest.approx(0.6))
    assert len({r.track_id for r in reports}) == 1
    assert reports[-1].trail[-1] == reports[-1].instance.centroid and len(reports[-1].trail) == 5


def test_velocity_is_absent_without_3d():
    tracker = Tracker(TrackingSettings(min_hits=1))
    reports = [tracker.update(i * 0.1, (CUP,), [square(10 + i, 10)])[0] for i in range(3)]
    assert [r.velocity for r in reports] == [None, None, None] and reports[2].track_id == reports[0].track_id


def crossing_and_turning_back(with_3d: bool) -> tuple[set[int], set[int]]:
    """Two cups at 1 m and 2 m meet in the image, overlapping, and each turns back: the ids each one got."""
    tracker = Tracker(TrackingSettings(min_hits=1, gate_m=0.2))
    near_ids, far_ids = set(), set()
    for frame in range(12):
        step = frame if frame <= 5 else 10 - frame
        near_x, far_x = 10 + 8 * step, 70 - 8 * step
        near = square(near_x, 20, 20, at=(0.01 * near_x, 0.0, 1.0) if with_3d else None)
        far = square(far_x, 20, 16, at=(0.01 * far_x, 0.0, 2.0) if with_3d else None)
        reports = tracker.update(frame * 0.1, (CUP,), [near, far] if frame % 2 else [far, near])
        by_instance = {id(r.instance): r.track_id for r in reports}
        near_ids.add(by_instance[id(near)])
        far_ids.add(by_instance[id(far)])
    return near_ids, far_ids


def test_two_cups_crossing_at_different_depths_keep_their_ids():
    """Same prompt, masks overlapping as they turn: the 3D gate keeps them apart where overlap alone cannot."""
    near_ids, far_ids = crossing_and_turning_back(with_3d=True)
    assert len(near_ids) == len(far_ids) == 1 and near_ids != far_ids
    near_ids, far_ids = crossing_and_turning_back(with_3d=False)
    assert len(near_ids | far_ids) > 2  # masks alone follow the motion past the turn: ids swap or restart


def test_an_instance_beyond_the_gate_is_another_object():
    tracker = Tracker(TrackingSettings(min_hits=1, gate_m=0.2))
    a = tracker.update(0.0, (CUP,), [square(10, 10, at=(0.0, 0.0, 1.0))])[0]
    b = tracker.update(0.1, (CUP,), [square(10, 10, at=(0.0, 0.0, 1.5))])[0]  # same pixels, 0.5 m farther
    assert a.track_id != b.track_id


def test_the_two_parts_of_a_split_detection_keep_the_objects_id():
    tracker = Tracker(TrackingSettings(min_hits=1))
    whole = tracker.update(0.0, (CUP,), [square(10, 10, 20)])[0].track_id
    halves = [square(10, 10, 20), square(10, 10, 20)]
    halves = [
        Instance(**{**vars(halves[0]), "bbox": (10, 10, 20, 9), "area": 180, "mask": np.ones((9, 20), bool)}),
        Instance(**{**vars(halves[1]), "bbox": (10, 21, 20, 9), "area": 180, "mask": np.ones((9, 20), bool)}),
    ]
    assert [r.track_id for r in tracker.update(0.1, (CUP,), halves)] == [whole, whole]
    assert tracker.update(0.2, (CUP,), [square(10, 10, 20)])[0].track_id == whole


def test_tracking_off_reports_no_ids_and_turning_it_off_ends_the_tracks():
    tracker = Tracker(TrackingSettings(min_hits=1))
    first = tracker.update(0.0, (CUP,), [square(0, 0)])[0].track_id
    tracker.configure(TrackingSettings(enabled=False))
    assert tracker.update(0.1, (CUP,), [square(0, 0)])[0].track_id == 0 and tracker.live_tracks == 0
    tracker.configure(TrackingSettings(min_hits=1))
    assert tracker.update(0.2, (CUP,), [square(0, 0)])[0].track_id not in (0, first)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"min_hits": 0}, "min_hits must be 1..100"),
        ({"max_missed_frames": -1}, "max_missed_frames must be 0..1000"),
        ({"gate_m": 0}, "gate_m must be a number in (0, 10]"),
        ({"min_iou": 1.5}, "min_iou must be a number in (0, 1]"),
        ({"velocity_smoothing": "fast"}, "velocity_smoothing must be a number in (0, 1]"),
        ({"enabled": "yes"}, "enabled must be true or false"),
    ],
)
def test_settings_out_of_range_are_refused_with_the_reason(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        TrackingSettings(**change)
