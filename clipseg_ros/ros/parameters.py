"""The node's parameters: one table of names, kinds, defaults, descriptions and checks.

`config/segment.yaml` carries the same defaults. Every parameter is declared with dynamic typing and
checked here instead of by rclpy, so that a params file's `max_rate_hz: 5` (an integer for a float, as
ROS users write it) is accepted, and any other type mismatch, at startup or at runtime, is refused
with a reason that names the parameter, never a traceback. The limits themselves come from
`clipseg_ros.limits`, shared with the engine, the service and the command line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from clipseg_ros import limits
from clipseg_ros.checkpoints import DEFAULT_WEIGHTS

TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
INPUT_RELIABILITIES = ("auto", *RELIABILITIES)
# A camera name becomes a topic namespace (`<camera>/image`, `~/<camera>/mask`): one ROS name token.
_CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

# kind -> (python types accepted, description for messages)
_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "bool": ((bool,), "true or false"),
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "str": ((str,), "a string"),
    "str_list": ((list,), "a list of strings"),
    "int_list": ((list,), "a list of integers"),
}


def _choice(options: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}"


def _engine_check(check: Callable[[Any], Any]) -> Callable[[Any], str | None]:
    """An engine `limits.check_*` (raises ValueError) as a parameter check (returns the reason)."""

    def reason(v: Any) -> str | None:
        try:
            check(v)
        except ValueError as exc:
            return str(exc)
        return None

    return reason


def _in_range(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be in [{low}, {high}]"


def _prompts(v: list[str]) -> str | None:
    if len(v) > limits.MAX_PROMPTS:
        return f"at most {limits.MAX_PROMPTS} prompts"
    if any(not p.strip() for p in v):
        return "a prompt must not be empty or blank (an empty list pauses the output)"
    return None


def _cameras(v: list[str]) -> str | None:
    bad = [name for name in v if not _CAMERA_NAME.fullmatch(name)]
    if bad:
        return f"camera names must be letters, digits and _ starting with a letter: {bad}"
    if len(set(v)) != len(v):
        return "camera names must be unique"
    return None


@dataclass(frozen=True)
class Spec:
    kind: str
    default: Any
    description: str
    read_only: bool = True
    check: Callable[[Any], str | None] | None = None


SPECS: dict[str, Spec] = {
    "autostart": Spec(
        "bool", True, "configure and activate on start; false: wait for a lifecycle manager (~/change_state)"
    ),
    "cameras": Spec(
        "str_list",
        [],
        "camera names; each reads <camera>/image and <camera>/camera_info and publishes under ~/<camera>/. "
        "Empty: one camera on `image` and `camera_info`, outputs directly under ~/",
        check=_cameras,
    ),
    "weights": Spec(
        "str",
        DEFAULT_WEIGHTS,
        "Hugging Face hub id or local path of CLIPSeg weights (HF or original format)",
        check=lambda v: None if v.strip() else "must name a hub id or a local path",
    ),
    "device": Spec(
        "str", "auto", f"torch device: {limits.DEVICE_NAMES}", check=_engine_check(limits.check_device_name)
    ),
    "precision": Spec(
        "str", "fp32", "inference precision: fp32, fp16 or bf16 (fp16/bf16 on GPU)", check=_choice(limits.PRECISIONS)
    ),
    "backend": Spec(
        "str",
        "torch",
        f"runtime of the image path: {', '.join(limits.BACKENDS)} (onnxruntime and tensorrt need their packages; "
        "never a silent fallback)",
        check=_choice(limits.BACKENDS),
    ),
    "input_size": Spec(
        "int_list",
        [352, 352],
        "[height, width] the model sees; outputs are resized back to the frame",
        check=_engine_check(limits.check_input_size),
    ),
    "cache_size": Spec(
        "int",
        256,
        "prompt embeddings kept in memory (text and visual)",
        check=lambda v: None if v >= 0 else "must be >= 0",
    ),
    "image_transport": Spec(
        "str",
        "raw",
        "raw: subscribe to `image`; compressed: to `image/compressed` (jpeg/png)",
        check=_choice(TRANSPORTS),
    ),
    "qos.input_reliability": Spec(
        "str",
        "auto",
        "input QoS: auto matches the publishers (reliable if all are), else fixed",
        check=_choice(INPUT_RELIABILITIES),
    ),
    "qos.input_depth": Spec(
        "int",
        1,
        "input queue depth (1: latest frame only)",
        check=lambda v: None if 1 <= v <= 100 else "must be in 1..100",
    ),
    "qos.output_reliability": Spec("str", "reliable", "output QoS", check=_choice(RELIABILITIES)),
    "qos.output_depth": Spec(
        "int", 1, "output queue depth", check=lambda v: None if 1 <= v <= 100 else "must be in 1..100"
    ),
    "max_image_pixels": Spec(
        "int",
        limits.DEFAULT_MAX_IMAGE_PIXELS,
        "largest frame or service image accepted, in pixels (width x height, read from the header before decoding)",
        read_only=False,
        check=lambda v: None if v > 0 else "must be > 0",
    ),
    "prompts": Spec(
        "str_list", [], "text prompts, one mask each; empty pauses the output", read_only=False, check=_prompts
    ),
    "prompt_separator": Spec(
        "str",
        ";",
        'separates prompts in a ~/prompt message ("cup; red mug")',
        read_only=False,
        check=lambda v: None if v.strip() else "must not be empty or blank",
    ),
    "threshold": Spec(
        "float",
        limits.DEFAULT_THRESHOLD,
        "probability above which a pixel is in a mask",
        read_only=False,
        check=_engine_check(limits.check_threshold),
    ),
    "max_rate_hz": Spec(
        "float",
        0.0,
        "most frames segmented per second (0: as fast as inference allows)",
        read_only=False,
        check=lambda v: None if v >= 0 else "must be >= 0",
    ),
    "segmentation.probabilities": Spec(
        "bool", False, "include the 32FC1 probability maps in ~/segmentation", read_only=False
    ),
    "instances.min_area": Spec(
        "int",
        limits.DEFAULT_MIN_AREA,
        "smallest connected region of a prompt's mask, in pixels, that is an instance",
        read_only=False,
        check=_engine_check(lambda v: limits.check_count("instances.min_area", v, 1)),
    ),
    "depth.enabled": Spec(
        "bool", False, "subscribe to <camera>/depth/image and depth/camera_info (aligned, REP-118) for 3D and points"
    ),
    "depth.sync_tolerance_s": Spec(
        "float",
        limits.DEFAULT_SYNC_TOLERANCE_S,
        "colour and depth stamps closer than this are one frame; also the longest a frame waits for its depth",
        check=_engine_check(
            lambda v: limits.check_positive_number("depth.sync_tolerance_s", v, limits.MAX_SYNC_TOLERANCE_S)
        ),
    ),
    "depth.min_m": Spec("float", limits.DEFAULT_DEPTH_MIN_M, "nearest valid depth (metres)", read_only=False),
    "depth.max_m": Spec("float", limits.DEFAULT_DEPTH_MAX_M, "farthest valid depth (metres)", read_only=False),
    "depth.min_points": Spec(
        "int",
        limits.DEFAULT_MIN_POINTS,
        "fewer valid depth points in an instance: it has no 3D",
        read_only=False,
        check=_engine_check(lambda v: limits.check_count("depth.min_points", v, 1)),
    ),
    "depth.object_depth_m": Spec(
        "float",
        limits.DEFAULT_OBJECT_DEPTH_M,
        "points farther than this from an instance's median depth are background",
        read_only=False,
        check=_engine_check(
            lambda v: limits.check_positive_number("depth.object_depth_m", v, limits.DEPTH_MAX_LIMIT_M)
        ),
    ),
    "points.stride": Spec(
        "int",
        limits.DEFAULT_POINT_STRIDE,
        "~/points takes every n-th pixel per row and column",
        read_only=False,
        check=_engine_check(lambda v: limits.check_count("points.stride", v, 1, limits.MAX_POINT_STRIDE)),
    ),
    "points.prompts": Spec("str_list", [], "prompts whose pixels go into ~/points; empty: all", read_only=False),
    "overlay.enabled": Spec("bool", True, "compute ~/overlay (only while someone subscribes)", read_only=False),
    "overlay.alpha": Spec("float", 0.5, "overlay colour opacity", read_only=False, check=_in_range(0.0, 1.0)),
}
RUNTIME = tuple(name for name, spec in SPECS.items() if not spec.read_only)


def declare(node: Node) -> None:
    for name, spec in SPECS.items():
        descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only, dynamic_typing=True)
        # An empty-list default would be typed as a byte array, and a params file's `[]` leaves a parameter
        # unset: both read as the default through `value()`.
        node.declare_parameter(name, spec.default if spec.default != [] else None, descriptor)
        if spec.default == [] and not spec.read_only and node.get_parameter(name).type_ == Parameter.Type.NOT_SET:
            node.set_parameters([Parameter(name, Parameter.Type.STRING_ARRAY, [])])


def coerce(name: str, value: Any) -> Any:
    """`value` as the parameter's kind (an integer for a float becomes a float); ValueError with the reason."""
    spec = SPECS[name]
    if value is None:
        return spec.default
    types, wanted = _KINDS[spec.kind]
    ok = isinstance(value, types) and not (isinstance(value, bool) and spec.kind in ("int", "float"))
    if ok and spec.kind.endswith("_list"):
        item = str if spec.kind == "str_list" else int
        value = list(value)
        ok = all(isinstance(v, item) and not isinstance(v, bool) for v in value)
    if not ok:
        raise ValueError(f"{name}: must be {wanted} (got {value!r})")
    return float(value) if spec.kind == "float" else value


def validate(name: str, value: Any) -> str | None:
    """Why `value` is not acceptable for `name`, or None when it is."""
    spec = SPECS.get(name)
    if spec is None:
        return None
    try:
        value = coerce(name, value)
    except ValueError as exc:
        return str(exc)
    reason = spec.check(value) if spec.check else None
    return f"{name}: {reason} (got {value!r})" if reason else None


def value(node: Node, name: str) -> Any:
    """The parameter's current value as its kind (call after `startup_errors` found none)."""
    return coerce(name, node.get_parameter(name).value)


def startup_errors(node: Node) -> list[str]:
    """Every invalid value the node was started with (from a params file or -p)."""
    return [reason for name in SPECS if (reason := validate(name, node.get_parameter(name).value))]
