"""The paper's metrics on cases small enough to compute by hand."""

from __future__ import annotations

import numpy as np
import pytest

from clipseg_ros.train.metrics import SegmentationMetrics, threshold_grid

TARGET = np.array([[1, 1], [0, 0]])


def test_perfect_prediction_scores_one_everywhere():
    m = SegmentationMetrics()
    m.add(TARGET.astype(float), TARGET, "cup")
    assert m.at(0.3) == {"mIoU": 1.0, "IoU_FG": 1.0, "IoU_BIN": 1.0, "AP": 1.0}


def test_empty_prediction_finds_nothing():
    m = SegmentationMetrics()
    m.add(np.zeros((2, 2)), TARGET, "cup")
    r = m.at(0.3)
    # fg: tp 0, fn 2 -> 0; bg: tn 2, fn 2 -> 2/4
    assert r["IoU_FG"] == 0.0 and r["mIoU"] == 0.0
    assert r["IoU_BIN"] == pytest.approx(0.5 * (0.0 + 0.5))
    assert r["AP"] == 0.0


def test_partial_prediction_by_hand():
    m = SegmentationMetrics()
    m.add(np.array([[0.9, 0.2], [0.6, 0.1]]), TARGET, "cup")
    r = m.at(0.3)
    # at 0.3 predicted {0.9 (fg), 0.6 (bg)}: tp 1, fp 1, fn 1, tn 1
    assert r["IoU_FG"] == pytest.approx(1 / 3)
    assert r["IoU_BIN"] == pytest.approx(0.5 * (1 / 3 + 1 / 3))
    # ranked 0.9 fg, 0.6 bg, 0.2 fg, 0.1 bg: AP = 1 * 0.5 + 2/3 * 0.5
    assert r["AP"] == pytest.approx(5 / 6)


def test_miou_averages_groups_iou_fg_pools_pixels():
    m = SegmentationMetrics()
    a = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    m.add(a.astype(float), a, "a")  # perfect: tp 4
    b_target = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    b_pred = np.array([1.0, 0, 1, 0, 0, 0, 0, 0])  # tp 1, fp 1, fn 1 -> 1/3
    m.add(b_pred, b_target, "b")
    r = m.at(0.3)
    assert r["mIoU"] == pytest.approx((1 + 1 / 3) / 2)
    assert r["IoU_FG"] == pytest.approx(5 / 7)
    assert m.groups == 2 and m.samples == 2


def test_same_group_is_pooled_before_averaging():
    m = SegmentationMetrics()
    m.add(np.array([1.0, 0]), np.array([1, 0]), "a")  # tp 1
    m.add(np.array([1.0, 0]), np.array([0, 1]), "a")  # fp 1, fn 1
    assert m.at(0.3)["mIoU"] == pytest.approx(1 / 3)


def test_all_negative_set():
    silent = SegmentationMetrics()
    for phrase in ("cup", "dog"):
        silent.add(np.zeros((2, 2)), np.zeros((2, 2)), phrase)
    r = silent.at(0.3)
    # nothing to find and nothing found: a right answer; AP is undefined without foreground
    assert r == {"mIoU": 1.0, "IoU_FG": 1.0, "IoU_BIN": 1.0, "AP": None}

    noisy = SegmentationMetrics()
    noisy.add(np.array([[0.8, 0.0], [0.0, 0.0]]), np.zeros((2, 2)), "cup")
    r = noisy.at(0.3)
    assert r["IoU_FG"] == 0.0 and r["mIoU"] == 0.0
    assert r["IoU_BIN"] == pytest.approx(0.5 * (0.0 + 3 / 4))


def test_threshold_is_inclusive_like_the_engine_masks():
    m = SegmentationMetrics()
    m.add(np.array([0.3, 0.29]), np.array([1, 0]), "cup")
    assert m.at(0.3)["IoU_FG"] == 1.0


def test_sweep_is_consistent_with_single_thresholds():
    rng = np.random.default_rng(0)
    target = rng.random((16, 16)) < 0.3
    probs = np.clip(target * 0.5 + rng.random((16, 16)) * 0.6, 0, 1)
    m = SegmentationMetrics()
    m.add(probs, target, "x")
    sweep = m.sweep()
    recall = np.asarray(sweep["recall"])
    assert np.all(np.diff(recall) <= 0)  # higher threshold, fewer pixels
    for t in (0.2, 0.5, 0.7):
        j = sweep["threshold"].index(t)
        pred = probs >= t
        tp, fp, fn = (pred & target).sum(), (pred & ~target).sum(), (~pred & target).sum()
        assert sweep["IoU_FG"][j] == pytest.approx(tp / (tp + fp + fn))


def test_threshold_must_be_on_the_grid():
    m = SegmentationMetrics(threshold_grid(step=0.1))
    m.add(np.zeros(2), np.array([1, 0]), "x")
    with pytest.raises(ValueError, match="grid"):
        m.at(0.35)
    assert 0.35 in SegmentationMetrics(threshold_grid(step=0.1, include=(0.35,))).thresholds


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="pixels"):
        SegmentationMetrics().add(np.zeros((2, 2)), np.zeros((3, 3)), "x")
