"""The files users read agree with the code: rviz and README topic names, parameter checks, the frame mailbox."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import yaml

from clipseg_ros.engine import limits
from clipseg_ros.ros.node import parameters
from clipseg_ros.ros.node.frame_mailbox import FrameMailbox
from clipseg_ros.ros.node.frame_outputs import OUTPUT_TYPES

ROOT = Path(__file__).resolve().parents[2]


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
    node_source = (ROOT / "clipseg_ros" / "ros" / "node" / "segment_node.py").read_text()
    # A camera's outputs are named by frame_outputs.OUTPUT_TYPES (~/<camera>/<name>); the node's own by its source.
    private = set(re.findall(r'"~/(\w+)"', node_source)) | set(OUTPUT_TYPES)
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
