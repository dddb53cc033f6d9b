"""The files users read agree with the code: params file vs parameter table, rviz and README topic names."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import yaml

from clipseg_ros import limits
from clipseg_ros.ros import parameters
from clipseg_ros.ros.frame_mailbox import FrameMailbox

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
    assert "must be in (0, 1)" in parameters.validate("threshold", 1.0)
    assert "empty or blank" in parameters.validate("prompts", ["cup", " "])
    assert "at most" in parameters.validate("prompts", ["x"] * (limits.MAX_PROMPTS + 1))
    assert "one of" in parameters.validate("precision", "fp64")
    assert parameters.validate("prompts", []) is None


def test_rviz_and_readme_use_the_node_topic_names():
    rviz = yaml.safe_load((ROOT / "config" / "segment.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"]}
    assert topics == {"/image", "/clipseg/overlay", "/clipseg/mask", "/clipseg/points", "/clipseg/markers"}
    node_source = "".join((ROOT / "clipseg_ros" / "ros" / f).read_text() for f in ("segment_node.py", "camera.py"))
    private = set(re.findall(r'"~/(?:\{prefix\})?(\w+)"', node_source))
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
        "segmentation",
        "points",
        "markers",
    }
    readme = (ROOT / "README.md").read_text()
    for name in private:
        assert f"/clipseg/{name}" in readme, name
    for name in parameters.SPECS:
        assert f"`{name}`" in readme, name


def test_frame_mailbox_keeps_the_newest_frame_of_each_camera():
    mailbox = FrameMailbox()
    for i in range(5):
        mailbox.put("front", i)
    mailbox.put("left", "l0")
    assert mailbox.take(timeout=0.0) == {"front": 4, "left": "l0"}
    assert mailbox.dropped == {"front": 4}
    assert mailbox.take(timeout=0.01) == {}
    threading.Timer(0.05, mailbox.put, args=("left", "late")).start()
    assert mailbox.take(timeout=5.0) == {"left": "late"}
    mailbox.put("front", "gone")
    mailbox.discard("front")
    assert mailbox.take(timeout=0.0) == {}
    mailbox.close()
    assert mailbox.closed and mailbox.take(timeout=5.0) == {}


def test_integers_are_accepted_for_float_parameters_and_other_types_refused():
    assert parameters.validate("max_rate_hz", 5) is None
    assert parameters.coerce("max_rate_hz", 5) == 5.0 and isinstance(parameters.coerce("max_rate_hz", 5), float)
    assert "must be a number" in parameters.validate("threshold", "high")
    assert "must be a number" in parameters.validate("threshold", True)
    assert "must be an integer" in parameters.validate("cache_size", 2.5)
    assert "list of strings" in parameters.validate("prompts", [1, 2])
    assert "list of integers" in parameters.validate("input_size", [352.0, 352.0])
    assert "true or false" in parameters.validate("overlay.enabled", "yes")
    assert parameters.coerce("prompts", None) == []  # a params file's `[]` leaves the parameter unset


def test_limits_are_the_engines():
    """One definition: the parameters refuse exactly what the engine refuses."""
    for value in (0.0, 1.0, -0.1, 1.5):
        assert parameters.validate("threshold", value) is not None
    assert parameters.validate("threshold", 0.999) is None
    for device in ("cuda:x", "gpu", "cuda0"):
        assert "device" in parameters.validate("device", device)
    assert parameters.validate("device", "cuda:1") is None
    assert parameters.validate("input_size", [limits.INPUT_SIDE_MAX + 16, 352]) is not None
    assert parameters.validate("cameras", ["front", "front"]) is not None
    assert parameters.validate("cameras", ["front/left"]) is not None
    assert parameters.validate("cameras", ["front", "left_2"]) is None
