"""The prompt board without ROS: prompts of every source, their generations, the label announcement, and the
settings read from parameter values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clipseg_ros.engine import limits
from clipseg_ros.engine.visual_prompt import VisualPrompt
from clipseg_ros.msg import VisualPrompt as VisualPromptMsg
from clipseg_ros.ros.image_codec import ImageDecodeError, numpy_to_image
from clipseg_ros.ros.node import parameters
from clipseg_ros.ros.node.prompt_board import PromptBoard, label_info, visual_label
from clipseg_ros.ros.node.settings import InputSettings, Settings

DEFAULTS = {name: parameters.coerce(name, spec.default) for name, spec in parameters.SPECS.items()}


def values(changes: dict | None = None):
    merged = {**DEFAULTS, **(changes or {})}
    return lambda name: merged[name]


class Node:
    """The parameters as the node holds them: a change the board accepts is kept, as rclpy keeps it."""

    def __init__(self, prompts: list[str], **changes) -> None:
        self.values = {**DEFAULTS, "prompts": prompts, **changes}
        self.board = PromptBoard()
        self.board.configure(Settings.read(self.values.__getitem__))

    def set(self, changes: dict) -> str | None:
        reason = self.board.change(changes, self.values.__getitem__)
        if reason is None:
            self.values.update(changes)
        return reason


def board_with(prompts: list[str], **changes) -> PromptBoard:
    return Node(prompts, **changes).board


def visual_msg(label: str, mask_rows: int = 20) -> VisualPromptMsg:
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[5:15, 5:15] = (200, 30, 30)
    mask = np.zeros((mask_rows, 30), np.uint8)
    mask[5:15, 5:15] = 255
    return VisualPromptMsg(image=numpy_to_image(rgb, "rgb8"), mask=numpy_to_image(mask, "mono8"), label=label)


def test_settings_are_read_from_parameter_values():
    settings = Settings.read(values({"prompts": [" cup ", "red mug"], "overlay.enabled": False}))
    assert settings.prompts == ("cup", "red mug")
    assert settings.outputs.overlay_alpha is None  # overlay off
    assert settings.threshold == limits.DEFAULT_THRESHOLD
    inputs = InputSettings.read(values({"image_transport": "compressed", "depth.enabled": True}))
    assert inputs.compressed and inputs.reliability == "auto"
    assert inputs.depth_sync_s == DEFAULTS["depth.sync_tolerance_s"]
    assert InputSettings.read(values()).depth_sync_s is None  # no depth input unless enabled
    with pytest.raises(ValueError, match="depth"):
        Settings.read(values({"depth.min_m": 3.0, "depth.max_m": 1.0}))


def test_parameter_changes_apply_and_start_a_generation_only_when_labels_or_threshold_change():
    node = Node(["cup"])
    board = node.board
    first = board.prompt_set()
    assert node.set({"max_rate_hz": 5}) is None
    assert board.settings.max_rate_hz == 5.0 and board.prompt_set().generation == first.generation
    assert board.settings.prompts == ("cup",)  # the values not changing are the current ones
    assert node.set({"prompts": ["cup", "bottle"]}) is None
    second = board.prompt_set()
    assert second.labels == ("cup", "bottle") and second.generation > first.generation
    assert node.set({"threshold": 0.3}) is None
    assert board.prompt_set().generation > second.generation and board.settings.threshold == 0.3
    assert board.settings.max_rate_hz == 5.0 and board.settings.prompts == ("cup", "bottle")
    unconfigured = PromptBoard()  # before configure a change is only checked
    assert unconfigured.change({"threshold": 0.3}, values()) is None and unconfigured.settings is None


def test_refused_changes_name_the_reason_and_change_nothing():
    node = Node(["cup"], **{"depth.max_m": 2.0})
    before = node.board.prompt_set()
    assert "threshold" in node.set({"threshold": 1.5, "prompts": ["bottle"]})
    assert "must be a number" in node.set({"max_rate_hz": "fast"})
    assert "depth" in node.set({"depth.min_m": 5.0})  # valid alone, not with the current depth.max_m
    assert node.board.prompt_set() == before


def test_visual_prompts_are_added_replaced_and_removed_by_label():
    board = board_with(["cup"])
    assert board.set_visual_prompt("red square", visual_msg("red square"))
    assert board.set_visual_prompt("blue", visual_msg("blue"))
    assert board.set_visual_prompt("red square", visual_msg("red square"))  # replaced, keeps its place
    prompt_set = board.prompt_set()
    assert prompt_set.labels == ("cup", "red square", "blue")
    assert all(isinstance(p, VisualPrompt) for p in prompt_set.prompts[1:])
    assert board.set_visual_prompt("red square", VisualPromptMsg(label="red square"))  # an empty image removes it
    assert board.prompt_set().labels == ("cup", "blue")
    generation = board.prompt_set().generation
    assert not board.set_visual_prompt("never added", VisualPromptMsg())  # nothing to remove: no new generation
    assert board.prompt_set().generation == generation
    assert visual_label(VisualPromptMsg(label="  ")) == "visual"


def test_bad_and_surplus_visual_prompts_are_refused():
    board = board_with(["cup"])
    with pytest.raises(ImageDecodeError, match="mask is 30x10 but its image is 30x20"):
        board.set_visual_prompt("bad", visual_msg("bad", mask_rows=10))
    for i in range(limits.MAX_PROMPTS - 1):
        board.set_visual_prompt(f"v{i}", visual_msg(f"v{i}"))
    with pytest.raises(ValueError, match=f"already {limits.MAX_PROMPTS} prompts"):
        board.set_visual_prompt("one more", visual_msg("one more"))
    # Text prompts that would exceed the limit beside the visual ones are refused too.
    reason = board.change({"prompts": ["cup", "bottle"]}, values({"prompts": ["cup"]}))
    assert reason == f"prompts: with {limits.MAX_PROMPTS - 1} visual prompts at most {limits.MAX_PROMPTS}"


def test_service_prompts_are_the_requests_own_else_the_boards():
    board = board_with(["cup"])
    own = board.request_prompts(["bottle"], [visual_msg(""), visual_msg("mine")])
    assert own[0] == "bottle" and [p.label for p in own[1:]] == ["visual 1", "mine"]
    assert board.request_prompts([], []) == ["cup"]
    with pytest.raises(ValueError, match="no prompts in the request and none set on the node"):
        board_with([]).request_prompts([], [])


def test_results_of_a_superseded_generation_are_counted_as_discarded():
    node = Node(["cup"])
    board = node.board
    taken = board.prompt_set()
    assert not board.superseded(taken, 2)
    node.set({"prompts": ["bottle"]})
    assert board.superseded(taken, 2) and board.superseded(taken, 1)
    assert board.discarded == 3
    assert not board.superseded(board.prompt_set(), 5)


def test_label_info_gives_each_label_its_value_and_colour():
    board = board_with(["cup", "red mug"], threshold=0.4)
    board.set_visual_prompt("square", visual_msg("square"))
    info = json.loads(label_info(board.prompt_set()))
    assert info["labels"] == ["background", "cup", "red mug", "square"]  # index = value in ~/label
    assert len(info["colors"]) == 4 and info["colors"][0] == [0, 0, 0]
    assert len({tuple(c) for c in info["colors"]}) == 4
    assert info["threshold"] == 0.4
