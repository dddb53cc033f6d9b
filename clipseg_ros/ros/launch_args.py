"""What launch/segment.launch.py makes of its arguments: the node's parameter overrides, and an rviz config that
shows the topics the node really uses in its namespace.

Plain functions, no `launch` import: they are tested where launch is not installed, and the launch file calls
them with the arguments' performed values. Topic names are expanded by rclpy, as the node itself expands them.
"""

from __future__ import annotations

import copy

import yaml
from rclpy.expand_topic_name import expand_topic_name

NODE_NAME = "clipseg"
# Launch arguments that set the node parameter of their name (how the image path runs); empty: the params file's.
RUNTIME_ARGUMENTS = ("precision", "backend", "int8", "onnx_file")
# Values of `dds_profile` that mean: no Fast DDS profile for the node.
NO_DDS_PROFILE = ("", "none")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_bool(name: str, text: str) -> bool:
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise ValueError(f"launch argument {name}:={text!r}: expected true or false")


def parse_cameras(text: str) -> list[str]:
    """`front,left`, `[front, left]` or `['front', 'left']`: the camera names; `` or `[]`: one unnamed camera."""
    inner = text.strip().removeprefix("[").removesuffix("]")
    names = [name.strip().strip("'\"").strip() for name in inner.split(",")]
    if any(not name for name in names) and inner.strip():
        raise ValueError(f"launch argument cameras:={text!r}: an empty camera name (expected e.g. [front, left])")
    return [name for name in names if name]


def parameter_overrides(weights: str, device: str, autostart: str, cameras: str, **runtime: str) -> dict:
    """The node parameters the launch arguments set: an empty weights, device or RUNTIME_ARGUMENTS value (given
    by keyword) keeps the params file's value."""
    unknown = set(runtime) - set(RUNTIME_ARGUMENTS)
    if unknown:
        raise ValueError(f"no launch argument sets {sorted(unknown)}; these do: {', '.join(RUNTIME_ARGUMENTS)}")
    overrides: dict = {"autostart": parse_bool("autostart", autostart)}
    given = {"weights": weights, "device": device, **runtime}
    overrides.update({name: value for name, value in given.items() if value})
    names = parse_cameras(cameras)
    if names:  # none: the node's default (one camera), as an empty list has no parameter type
        overrides["cameras"] = names
    return overrides


def parameters_yaml(overrides: dict) -> str:
    """A params file (`/**`: whatever name and namespace the node gets) holding `overrides`, typed by YAML."""
    return yaml.safe_dump({"/**": {"ros__parameters": overrides}}, sort_keys=False)


def dds_profile_off(profile: str) -> bool:
    """`dds_profile:=none` (or empty): the node runs on Fast DDS's defaults, even if the environment names a profile.

    The variable must then be unset, not empty: Fast DDS reports an empty path as a failed XML load.
    """
    return profile.strip().lower() in NO_DDS_PROFILE


def rviz_topics(namespace: str, image: str, cameras: list[str]) -> dict[str, str]:
    """The topic of each rviz display, by display name: the camera's input and the node's overlay, mask, points
    and markers for it; with several cameras, each camera's displays are named `<camera> <display>`."""
    namespace = "/" + namespace.strip("/")
    if not cameras:
        return _camera_topics(namespace, image, "")
    return {
        f"{camera} {display}": topic
        for camera in cameras
        for display, topic in _camera_topics(namespace, f"{camera}/image", f"{camera}/").items()
    }


def _camera_topics(namespace: str, image: str, prefix: str) -> dict[str, str]:
    return {
        "Camera": expand_topic_name(image, NODE_NAME, namespace),
        "Overlay": expand_topic_name(f"~/{prefix}overlay", NODE_NAME, namespace),
        "Mask": expand_topic_name(f"~/{prefix}mask", NODE_NAME, namespace),
        "Points": expand_topic_name(f"~/{prefix}points", NODE_NAME, namespace),
        "Markers": expand_topic_name(f"~/{prefix}markers", NODE_NAME, namespace),
    }


def rviz_config(template: str, topics: dict[str, str]) -> str:
    """config/segment.rviz with one copy of its displays per camera in `topics` (see rviz_topics), each pointed
    at its topic."""
    config = yaml.safe_load(template)
    manager = config["Visualization Manager"]
    by_name = {display["Name"]: display for display in manager["Displays"]}
    displays = []
    for name, topic in topics.items():
        kind = name.rsplit(" ", 1)[-1]
        if kind not in by_name:
            raise ValueError(f"rviz config has no display named {kind!r}")
        display = copy.deepcopy(by_name[kind])
        display["Name"] = name
        display["Topic"]["Value"] = topic
        displays.append(display)
    manager["Displays"] = displays
    return yaml.safe_dump(config, sort_keys=False)
