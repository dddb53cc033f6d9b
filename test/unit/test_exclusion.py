"""Exclusion prompts ("cup; -hand"): one syntax parsed in clipseg_ros.engine.prompts, the same for text and visual
prompts, and clipseg_ros.engine.exclusion removing what they find from every other prompt."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipseg_ros.engine.exclusion import apply_exclusions
from clipseg_ros.engine.prompts import check_exclusions, clean_prompt, is_exclusion, prompt_subject, split_prompts
from clipseg_ros.engine.segmenter import Segmenter
from clipseg_ros.engine.visual_prompt import VisualPrompt


def test_split_prompts_keeps_ordinary_prompts_and_joins_the_mark():
    assert split_prompts("cup; red mug;; ") == ["cup", "red mug"]
    assert split_prompts("cup; - hand ;-robot base") == ["cup", "-hand", "-robot base"]
    assert split_prompts("cup | -hand", "|") == ["cup", "-hand"]


def test_clean_prompt_normalises_an_exclusion_and_refuses_a_bare_mark():
    assert clean_prompt("  -  hand ") == "-hand" and clean_prompt(" cup ") == "cup"
    with pytest.raises(ValueError, match="names nothing: write e.g. '-hand'"):
        clean_prompt(" - ")
    assert is_exclusion("-hand") and not is_exclusion("hand") and not is_exclusion("t-shirt")
    assert prompt_subject("-hand") == "hand" and prompt_subject("cup") == "cup"


@pytest.mark.parametrize(
    "labels, message",
    [
        (["-hand"], r"only exclusion prompts \(hand\): add one naming what to segment"),
        (["hand", "cup", "-hand"], "hand is both segmented and excluded"),
    ],
)
def test_a_prompt_set_with_nothing_left_or_a_contradiction_is_refused(labels, message):
    with pytest.raises(ValueError, match=message):
        check_exclusions(labels)


def test_check_exclusions_accepts_ordinary_sets():
    check_exclusions(["cup"])
    check_exclusions(["cup", "floor", "-hand", "-robot base"])


def test_an_exclusions_pixels_leave_every_other_prompt_and_it_leaves_the_labels():
    probabilities = np.zeros((4, 4, 6), np.float32)
    probabilities[0, :, :4] = 0.9  # cup: columns 0-3
    probabilities[1, :, 2:] = 0.8  # -hand: columns 2-5
    probabilities[2, :, 3:] = 0.7  # floor: columns 3-5
    probabilities[3, 0, 0] = 0.6  # -robot base: one pixel
    labels = ["cup", "-hand", "floor", "-robot base"]
    result = apply_exclusions(probabilities, probabilities >= 0.5, labels)
    assert result.labels == ("cup", "floor") and result.exclusions == ("hand", "robot base")
    assert result.masks[0].sum(axis=0).tolist() == [3, 4, 0, 0, 0, 0]  # (0, 0) is the robot's
    assert not result.masks[1].any()
    assert (result.masks == (result.probabilities >= 0.5)).all()  # probabilities cleaned alike
    assert probabilities[0, 0, 2] == pytest.approx(0.9)  # the input is not changed


def test_without_exclusions_the_maps_pass_unchanged():
    probabilities = np.random.default_rng(0).random((2, 3, 3)).astype(np.float32)
    masks = probabilities >= 0.5
    result = apply_exclusions(probabilities, masks, ["cup", "mug"])
    assert result.probabilities is probabilities and result.masks is masks and result.exclusions == ()


@pytest.fixture
def segmenter(tiny_model):
    return Segmenter(tiny_model, device="cpu", input_size=96)


def test_the_model_is_asked_for_the_subject_and_the_label_keeps_the_mark(segmenter):
    conditionals, labels = segmenter.conditionals(["cup", "- hand", "mug"])
    assert labels == ["cup", "-hand", "mug"]
    plain, _ = segmenter.conditionals(["hand"])
    assert torch.equal(conditionals[1], plain[0])


def test_a_segmentation_with_exclusions_keeps_only_the_others(segmenter):
    image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), np.uint8)
    result = segmenter.segment(image, ["cup", "-hand"], threshold=0.3)
    assert (result.masks[0] & result.masks[1]).any()  # the random model finds both in places
    excluded = apply_exclusions(result.probabilities, result.masks, result.labels)
    assert excluded.labels == ("cup",) and excluded.exclusions == ("hand",)
    assert not (excluded.masks[0] & result.masks[1]).any()


def test_only_exclusions_are_refused_by_the_segmenter(segmenter):
    with pytest.raises(ValueError, match="only exclusion prompts"):
        segmenter.segment(np.zeros((32, 32, 3), np.uint8), ["-hand"])


def test_a_visual_prompt_excludes_by_its_flag_or_its_label(segmenter):
    image = np.random.default_rng(1).integers(0, 255, (40, 40, 3), np.uint8)
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    flagged = VisualPrompt(image, mask, label="hand", exclude=True)
    marked = VisualPrompt(image, mask, label="- hand")
    assert flagged.name == marked.name == "-hand" and marked.exclude and marked.label == "hand"
    assert VisualPrompt(image, mask, exclude=True).name == "-visual"
    assert flagged.content_key == VisualPrompt(image, mask, label="hand").content_key  # one cached embedding
    result = segmenter.segment(image, ["cup", flagged], threshold=0.3)
    excluded = apply_exclusions(result.probabilities, result.masks, result.labels)
    assert result.labels == ["cup", "-hand"] and excluded.labels == ("cup",) and excluded.exclusions == ("hand",)
