"""The files users read agree with the code: params file vs parameter table, rviz and README topic names."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import yaml

from clipseg_ros import limits
from clipseg_ros.ros import parameters
from clipseg_ros.ros.latest_frame import LatestFrameSlot

ROOT = Path(__file__).resolve().parents[1]


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_params_file_names_every_parameter_with_its_default():
    params = _flatten(yaml.safe_load((ROOT / "config" / "segment.yaml").read_text())["/**"]["ros__parameters"])
    assert set(params) == set(parameters.SPECS)
    for name, spec in parameters.SPECS.items():
        assert params[name] == spec.default, name
        assert parameters.validate(name, spec.default) is None, name


def test_validation_gives_reasons():
    assert "must be in (0.0, 1.0)" in parameters.validate("threshold", 1.0)
    assert "empty or blank" in parameters.validate("prompts", ["cup", " "])
    assert "at most" in parameters.validate("prompts", ["x"] * (limits.MAX_PROMPTS + 1))
    assert "one of" in parameters.validate("precision", "fp64")
    assert parameters.validate("prompts", []) is None


def test_rviz_and_readme_use_the_node_topic_names():
    rviz = yaml.safe_load((ROOT / "config" / "segment.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"]}
    assert topics == {"/image", "/clipseg/overlay", "/clipseg/mask"}
    node_source = (ROOT / "clipseg_ros" / "ros" / "segment_node.py").read_text()
    private = set(re.findall(r'"~/(\w+)"', node_source))
    assert private == {
        "mask",
        "probability",
        "label",
        "overlay",
        "camera_info",
        "label_info",
        "prompt",
        "visual_prompt",
        "segment",
    }
    readme = (ROOT / "README.md").read_text()
    for name in private:
        assert f"/clipseg/{name}" in readme, name
    for name in parameters.SPECS:
        assert f"`{name}`" in readme, name


def test_latest_frame_slot_keeps_only_the_newest():
    slot = LatestFrameSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(timeout=0.0) == 4
    assert slot.dropped == 4
    assert slot.take(timeout=0.01) is None
    threading.Timer(0.05, slot.put, args=("late",)).start()
    assert slot.take(timeout=5.0) == "late"
    slot.close()
    assert slot.take(timeout=5.0) is None
