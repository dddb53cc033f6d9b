"""launch/segment.launch.py: its logic (clipseg_ros.ros.launch_args, with rclpy's name expansion and parameter
file parser), its structure (parsed), and with launch_ros installed its description evaluated for real."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
from pathlib import Path

import pytest
import rclpy.parameter
import yaml
from rclpy.parameter import Parameter

from clipseg_ros.ros import launch_args

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "segment.launch.py"
RVIZ_CONFIG = ROOT / "config" / "segment.rviz"
ARGUMENTS = {"image", "camera_info", "cameras", "namespace", "params_file", "weights", "device", "autostart",
             "dds_profile", "rviz", *launch_args.RUNTIME_ARGUMENTS}


def _calls(name: str) -> list[ast.Call]:
    tree = ast.parse(LAUNCH_FILE.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def _keyword(call: ast.Call, name: str):
    return next(k.value for k in call.keywords if k.arg == name)


def test_launch_file_declares_the_arguments_and_starts_installed_executables():
    declared = {ast.literal_eval(call.args[0]): call for call in _calls("DeclareLaunchArgument")}
    assert declared.keys() == ARGUMENTS
    # Relative inputs: a namespace moves them with the node's outputs.
    for name in ("image", "camera_info"):
        assert not ast.literal_eval(_keyword(declared[name], "default_value")).startswith("/"), name
    ours = [call for call in _calls("Node") if ast.literal_eval(_keyword(call, "package")) == "clipseg_ros"]
    assert [ast.literal_eval(_keyword(call, "executable")) for call in ours] == ["segment_node"]
    assert launch_args.NODE_NAME == "clipseg"  # /clipseg/prompt etc., as in the README
    # The launch ends with the node: no launch (or rviz2) left around a dead node.
    assert ast.unparse(_keyword(ours[0], "on_exit")).startswith("Shutdown(")
    installed = re.search(r"foreach\(node ([^)]*)\)", (ROOT / "CMakeLists.txt").read_text()).group(1).split()
    assert "segment_node" in installed and (ROOT / "scripts" / "segment_node").exists()
    source = LAUNCH_FILE.read_text()
    for name in ("segment.yaml", "segment.rviz", "fastdds_large_frames.xml"):
        assert (ROOT / "config" / name).exists() and name in source


@pytest.mark.parametrize(
    ("text", "names"),
    [("", []), ("[]", []), ("front", ["front"]), ("[front, left]", ["front", "left"]),
     ("front,left", ["front", "left"]), ("['front', 'left']", ["front", "left"])],
)
def test_cameras_argument(text, names):
    assert launch_args.parse_cameras(text) == names


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="cameras"):
        launch_args.parse_cameras("[front,,left]")
    with pytest.raises(ValueError, match="autostart"):
        launch_args.parameter_overrides("", "", "maybe", "")


def test_parameter_overrides_are_a_params_file_the_node_reads(tmp_path):
    """Typed as the node declares them (rclpy's own params-file parser), and `/**` whatever the node's name."""
    if not hasattr(rclpy.parameter, "parameter_dict_from_yaml_file"):
        pytest.skip("rclpy before Jazzy has no params-file parser")
    path = tmp_path / "overrides.yaml"
    path.write_text(launch_args.parameters_yaml(launch_args.parameter_overrides("/w", "", "false", "[front, left]")))
    parameters = {name: Parameter.from_parameter_msg(msg)
                  for name, msg in rclpy.parameter.parameter_dict_from_yaml_file(str(path), use_wildcard=True).items()}
    assert {name: (p.type_, p.value) for name, p in parameters.items()} == {
        "autostart": (Parameter.Type.BOOL, False),
        "weights": (Parameter.Type.STRING, "/w"),
        "cameras": (Parameter.Type.STRING_ARRAY, ["front", "left"]),
    }
    # Empty weights/device and no cameras set nothing: the params file's values and the node's default stand.
    assert launch_args.parameter_overrides("", "", "true", "") == {"autostart": True}


def test_dds_profile_none_means_unset():
    assert all(launch_args.dds_profile_off(value) for value in ("none", "", "NONE"))
    assert not launch_args.dds_profile_off("/opt/ros/profile.xml")


@pytest.mark.parametrize(
    ("namespace", "image", "cameras", "expected"),
    [
        ("", "image", [], ("/image", "/clipseg/overlay", "/clipseg/mask")),
        ("robot1", "image", [], ("/robot1/image", "/robot1/clipseg/overlay", "/robot1/clipseg/mask")),
        ("/robot1/", "/camera/color/image_raw", [], ("/camera/color/image_raw", "/robot1/clipseg/overlay",
                                                    "/robot1/clipseg/mask")),
    ],
)
def test_rviz_topics_follow_namespace(namespace, image, cameras, expected):
    topics = launch_args.rviz_topics(namespace, image, cameras)
    assert (topics["Camera"], topics["Overlay"], topics["Mask"]) == expected


def test_rviz_shows_every_camera():
    topics = launch_args.rviz_topics("robot1", "image", ["front", "left"])
    assert list(topics) == [f"{camera} {display}" for camera in ("front", "left")
                            for display in ("Camera", "Overlay", "Mask", "Points", "Markers")]
    assert topics["front Camera"] == "/robot1/front/image" and topics["left Camera"] == "/robot1/left/image"
    assert topics["left Overlay"] == "/robot1/clipseg/left/overlay"
    assert topics["left Points"] == "/robot1/clipseg/left/points"
    config = yaml.safe_load(launch_args.rviz_config(RVIZ_CONFIG.read_text(), topics))
    displays = config["Visualization Manager"]["Displays"]
    assert {d["Name"]: d["Topic"]["Value"] for d in displays} == topics
    # Each copy keeps its display's kind and settings: the left mask is an image display like the template's.
    template = {d["Name"]: d for d in yaml.safe_load(RVIZ_CONFIG.read_text())["Visualization Manager"]["Displays"]}
    left_mask = next(d for d in displays if d["Name"] == "left Mask")
    assert {**left_mask, "Name": "Mask", "Topic": template["Mask"]["Topic"]} == template["Mask"]


def test_rviz_config_changes_only_the_topics():
    template = RVIZ_CONFIG.read_text()
    topics = launch_args.rviz_topics("robot1", "image", [])
    config = yaml.safe_load(launch_args.rviz_config(template, topics))
    original = yaml.safe_load(template)
    displays = config["Visualization Manager"]["Displays"]
    assert {d["Name"]: d["Topic"]["Value"] for d in displays} == topics
    for display in original["Visualization Manager"]["Displays"]:
        display["Topic"]["Value"] = topics[display["Name"]]
    assert config == original
    # The shipped file itself stays usable with `rviz2 -d` for the default names.
    shipped = yaml.safe_load(template)["Visualization Manager"]["Displays"]
    assert {d["Name"]: d["Topic"]["Value"] for d in shipped} == launch_args.rviz_topics("", "image", [])


def test_launch_description(tmp_path):
    """With launch_ros (a ROS install; on no registry reachable here): the description, evaluated in a context."""
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros is on no package registry reachable here (see shared docs): description not loaded")
    from launch import LaunchContext, LaunchDescription
    from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable, UnsetEnvironmentVariable
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location("segment_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    declared = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert declared.keys() == ARGUMENTS
    # Introspection sees the node itself, not an opaque function that would make it.
    assert [e.node_executable for e in description.entities if isinstance(e, Node)] == ["segment_node"]

    context = LaunchContext()
    for name, argument in declared.items():
        context.launch_configurations[name] = "".join(s.perform(context) for s in argument.default_value)
    context.launch_configurations.update({"weights": "/w", "cameras": "[front,left]", "dds_profile": "none"})
    overrides = module.ParameterOverrides().perform(context)
    assert yaml.safe_load(Path(overrides).read_text())["/**"]["ros__parameters"] == {
        "autostart": True, "weights": "/w", "cameras": ["front", "left"]}
    os.unlink(overrides)
    setters = [e for e in description.entities if isinstance(e, SetEnvironmentVariable | UnsetEnvironmentVariable)]
    assert [type(e).__name__ for e in setters if e.condition.evaluate(context)] == ["UnsetEnvironmentVariable"]
