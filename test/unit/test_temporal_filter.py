"""Steady masks (clipseg_ros.perception.temporal_filter): hysteresis, each reset, and flicker on a still scene."""

from __future__ import annotations

import numpy as np
import pytest

from clipseg_ros.perception.temporal_filter import TemporalFilter, TemporalSettings
from clipseg_ros.train.tracking_eval import flicker, mean_iou, noisy_still_scene

ON = TemporalSettings(enabled=True, smoothing=1.0, on_threshold=0.5, off_threshold=0.3)  # hysteresis alone


def one_pixel(value: float, size: int = 4) -> np.ndarray:
    return np.full((1, size, size), value, np.float32)


def run(settings: TemporalSettings, values, labels=("cup",)) -> list[bool]:
    temporal = TemporalFilter(settings)
    return [bool(temporal.filter(i * 0.1, labels, one_pixel(v))[1][0, 0, 0]) for i, v in enumerate(values)]


def test_a_pixel_turns_on_at_the_on_threshold_and_off_only_below_the_off_threshold():
    assert run(ON, [0.4, 0.5, 0.4, 0.31, 0.29, 0.4, 0.5]) == [False, True, True, True, False, False, True]


def test_the_average_weighs_the_newest_frame_by_smoothing():
    temporal = TemporalFilter(TemporalSettings(enabled=True, smoothing=0.25))
    temporal.filter(0.0, ("cup",), one_pixel(0.0))
    averaged, masks = temporal.filter(0.1, ("cup",), one_pixel(1.0))
    assert averaged[0, 0, 0] == pytest.approx(0.25) and not masks.any()


def test_a_frame_sent_again_with_its_stamp_is_not_averaged_in_twice():
    temporal = TemporalFilter(TemporalSettings(enabled=True, smoothing=0.25))
    temporal.filter(0.0, ("cup",), one_pixel(0.0))
    first, _ = temporal.filter(0.1, ("cup",), one_pixel(1.0))
    again, _ = temporal.filter(0.1, ("cup",), one_pixel(1.0))
    assert first[0, 0, 0] == again[0, 0, 0] == pytest.approx(0.25)
    assert temporal.filter(0.2, ("cup",), one_pixel(1.0))[0][0, 0, 0] == pytest.approx(0.4375)


def test_off_passes_the_maps_through_thresholded_at_on():
    maps = np.array([[[0.2, 0.7]]], np.float32)
    averaged, masks = TemporalFilter(TemporalSettings(enabled=False)).filter(0.0, ("cup",), maps)
    assert averaged is maps and masks.tolist() == [[[False, True]]]


def on_then(temporal: TemporalFilter, stamp: float, labels, probabilities) -> bool:
    """After a frame that turned the pixel on, whether a frame at 0.4 (between the thresholds) keeps it on."""
    temporal.filter(0.0, ("cup",), one_pixel(0.9))
    return bool(temporal.filter(stamp, labels, probabilities)[1][0, 0, 0])


def test_the_state_holds_for_the_same_prompt_and_size_in_stamp_order():
    assert on_then(TemporalFilter(ON), 0.1, ("cup",), one_pixel(0.4))


def test_a_changed_or_removed_prompt_starts_again():
    temporal = TemporalFilter(ON)
    assert not on_then(temporal, 0.1, ("mug",), one_pixel(0.4))  # another prompt in its place
    temporal = TemporalFilter(ON)
    temporal.filter(0.0, ("cup",), one_pixel(0.9))
    temporal.end_prompts(["cup"])  # a visual prompt replaced under its label
    assert not temporal.filter(0.1, ("cup",), one_pixel(0.4))[1].any()


def test_a_frame_size_change_starts_again():
    assert not on_then(TemporalFilter(ON), 0.1, ("cup",), one_pixel(0.4, size=6))


def test_a_stamp_going_back_starts_again():
    temporal = TemporalFilter(ON)
    temporal.filter(5.0, ("cup",), one_pixel(0.9))
    assert not temporal.filter(1.0, ("cup",), one_pixel(0.4))[1].any()  # a recording played again


def test_prompts_are_filtered_each_on_their_own():
    temporal = TemporalFilter(ON)
    temporal.filter(0.0, ("cup", "hand"), np.concatenate([one_pixel(0.9), one_pixel(0.1)]))
    _, masks = temporal.filter(0.1, ("hand", "cup"), np.concatenate([one_pixel(0.4), one_pixel(0.4)]))
    assert masks[:, 0, 0].tolist() == [False, True]


def test_flicker_on_a_still_noisy_scene_drops_to_under_a_quarter_with_the_iou_kept(capsys):
    maps, truth = noisy_still_scene(seed=0, frames=60)
    raw = maps >= 0.5
    temporal = TemporalFilter(TemporalSettings(enabled=True))  # the defaults
    steady = np.stack([temporal.filter(i / 15, ("disc",), m[None])[1][0] for i, m in enumerate(maps)])
    with capsys.disabled():
        print(
            f"\nflicker {flicker(raw):.4f} -> {flicker(steady):.4f}, IoU {mean_iou(raw, truth):.4f} -> "
            f"{mean_iou(steady, truth):.4f}"
        )
    assert flicker(raw) > 0.05  # the scene does flicker unfiltered
    assert flicker(steady) <= flicker(raw) / 4
    assert mean_iou(steady, truth) >= mean_iou(raw, truth)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"smoothing": 0}, r"smoothing must be a number in \(0, 1\]"),
        ({"on_threshold": 0.3, "off_threshold": 0.5}, "must not be above the on threshold"),
        ({"off_threshold": 1.0}, r"threshold must be in \(0, 1\)"),
    ],
)
def test_settings_out_of_range_are_refused_with_the_reason(change, message):
    with pytest.raises(ValueError, match=message):
        TemporalSettings(**change)
