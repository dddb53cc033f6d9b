"""The node's parameters: one table of names, kinds, defaults, descriptions and checks.

`config/segment.yaml` carries the same defaults. Every parameter is declared with dynamic typing and
checked here instead of by rclpy, so that a params file's `max_rate_hz: 5` (an integer for a float, as
ROS users write it) is accepted, and any other type mismatch, at startup or at runtime, is refused
with a reason that names the parameter, never a traceback. The limits themselves come from
`clipseg_ros.engine.limits`, shared with the engine, the service and the command line; the reliability
names from `qos`. What the node's parts read from these values is built in `settings`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from clipseg_ros.engine import limits
from clipseg_ros.engine.checkpoints import DEFAULT_WEIGHTS
from clipseg_ros.ros.node.qos import AUTO, RELIABILITIES

TRANSPORTS = ("raw", "compressed")
# A camera name becomes a topic namespace (`<camera>/image`, `~/<camera>/mask`): one ROS name token.
_CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

# kind -> (python types accepted, description for messages, ROS parameter type for the reference page)
_KINDS: dict[str, tuple[tuple[type, ...], str, str]] = {
    "bool": ((bool,), "true or false", "bool"),
    "int": ((int,), "an integer", "integer"),
    "float": ((int, float), "a number", "double"),
    "str": ((str,), "a string", "string"),
    "str_list": ((list,), "a list of strings", "string[]"),
    "int_list": ((list,), "a list of integers", "integer[]"),
}


@dataclass(frozen=True)
class Check:
    """What a parameter accepts, as text for the parameter reference, and the test that says why a value is not."""

    allowed: str
    reason: Callable[[Any], str | None]


def _choice(options: tuple[str, ...]) -> Check:
    return Check(", ".join(options), lambda v: None if v in options else f"must be one of {', '.join(options)}")


def _engine_check(allowed: str, check: Callable[[Any], Any]) -> Check:
    """An engine `limits.check_*` (raises ValueError) as a parameter check (returns the reason)."""

    def reason(v: Any) -> str | None:
        try:
            check(v)
        except ValueError as exc:
            return str(exc)
        return None

    return Check(allowed, reason)


def _count(name: str, minimum: int, maximum: int | None = None) -> Check:
    allowed = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
    return _engine_check(allowed, lambda v: limits.check_count(name, v, minimum, maximum))


def _positive(name: str, maximum: float) -> Check:
    return _engine_check(f"(0, {maximum:g}]", lambda v: limits.check_positive_number(name, v, maximum))


def _in_range(low: float, high: float) -> Check:
    return Check(f"[{low:g}, {high:g}]", lambda v: None if low <= v <= high else f"must be in [{low:g}, {high:g}]")


def _at_least(low: float) -> Check:
    return Check(f">= {low:g}", lambda v: None if v >= low else f"must be >= {low:g}")


def _not_blank(why: str) -> Check:
    return Check("not blank", lambda v: None if v.strip() else why)


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
    check: Check | None = None

    @property
    def ros_type(self) -> str:
        return _KINDS[self.kind][2]


SPECS: dict[str, Spec] = {
    "autostart": Spec(
        "bool", True, "configure and activate on start; false: wait for a lifecycle manager (~/change_state)"
    ),
    "cameras": Spec(
        "str_list",
        [],
        "camera names; each reads <camera>/image and <camera>/camera_info and publishes under ~/<camera>/. "
        "Empty: one camera on `image` and `camera_info`, outputs directly under ~/",
        check=Check("unique names of letters, digits and _, each starting with a letter", _cameras),
    ),
    "weights": Spec(
        "str",
        DEFAULT_WEIGHTS,
        "Hugging Face hub id or local path of CLIPSeg weights (HF or original format)",
        check=_not_blank("must name a hub id or a local path"),
    ),
    "device": Spec(
        "str",
        "auto",
        f"torch device: {limits.DEVICE_NAMES}",
        check=_engine_check(limits.DEVICE_NAMES, limits.check_device_name),
    ),
    "precision": Spec(
        "str",
        "auto",
        "inference precision of the torch backend: auto (bf16 on a CPU where its matrix products, timed at "
        "configure, run at least 1.3x fp32's speed: AMX, AMD's AVX512-BF16; fp16 on a GPU with tensor cores; else "
        "fp32; the choice is logged with the figure), fp32, fp16 (CUDA only) or bf16 (a GPU, or such a CPU)",
        check=_choice(limits.PRECISIONS),
    ),
    "backend": Spec(
        "str",
        "torch",
        f"runtime of the image path: {', '.join(limits.BACKENDS)} (onnxruntime and tensorrt need their packages; "
        "never a silent fallback)",
        check=_choice(limits.BACKENDS),
    ),
    "int8": Spec(
        "str",
        "none",
        "int8 of the onnxruntime backend: none, or dynamic (weights quantised once into the export cache); static "
        "int8 is a file from `clipseg-export --int8 static`, given as onnx_file",
        check=_choice(limits.INT8_AT_LOAD),
    ),
    "onnx_file": Spec(
        "str",
        "",
        "ONNX file from clipseg-export for the onnxruntime or tensorrt backend, made from these weights at this "
        "input_size (else refused at configure); empty: the model is exported once into the cache",
    ),
    "input_size": Spec(
        "int_list",
        [352, 352],
        "[height, width] the model sees; outputs are resized back to the frame",
        check=_engine_check(
            f"each side {limits.INPUT_SIDE_MIN}..{limits.INPUT_SIDE_MAX}, a multiple of the model's patch size "
            "(16 for the released weights)",
            limits.check_input_size,
        ),
    ),
    "cache_size": Spec("int", 256, "prompt embeddings kept in memory (text and visual)", check=_at_least(0)),
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
        check=_choice((AUTO, *RELIABILITIES)),
    ),
    "qos.input_depth": Spec("int", 1, "input queue depth (1: latest frame only)", check=_in_range(1, 100)),
    "qos.output_reliability": Spec("str", "reliable", "output QoS", check=_choice(tuple(RELIABILITIES))),
    "qos.output_depth": Spec("int", 1, "output queue depth", check=_in_range(1, 100)),
    "max_image_pixels": Spec(
        "int",
        limits.DEFAULT_MAX_IMAGE_PIXELS,
        "largest frame or service image accepted, in pixels (width x height, read from the header before decoding)",
        read_only=False,
        check=_at_least(1),
    ),
    "prompts": Spec(
        "str_list",
        [],
        "text prompts, one mask each; empty pauses the output",
        read_only=False,
        check=Check(f"at most {limits.MAX_PROMPTS} with the visual prompts, none blank", _prompts),
    ),
    "prompt_separator": Spec(
        "str",
        ";",
        'separates prompts in a ~/prompt message ("cup; red mug")',
        read_only=False,
        check=_not_blank("must not be empty or blank"),
    ),
    "threshold": Spec(
        "float",
        limits.DEFAULT_THRESHOLD,
        "probability above which a pixel is in a mask",
        read_only=False,
        check=_engine_check(f"({limits.THRESHOLD_MIN:g}, {limits.THRESHOLD_MAX:g})", limits.check_threshold),
    ),
    "max_rate_hz": Spec(
        "float",
        0.0,
        "most frames segmented per second (0: as fast as inference allows)",
        read_only=False,
        check=_at_least(0),
    ),
    "segmentation.probabilities": Spec(
        "bool", False, "include the 32FC1 probability maps in ~/segmentation", read_only=False
    ),
    "instances.min_area": Spec(
        "int",
        limits.DEFAULT_MIN_AREA,
        "smallest connected region of a prompt's mask, in pixels, that is an instance",
        read_only=False,
        check=_count("instances.min_area", 1),
    ),
    "depth.enabled": Spec(
        "bool", False, "subscribe to <camera>/depth/image and depth/camera_info (aligned, REP-118) for 3D and points"
    ),
    "depth.sync_tolerance_s": Spec(
        "float",
        limits.DEFAULT_SYNC_TOLERANCE_S,
        "colour and depth stamps closer than this are one frame; also the longest a frame waits for its depth",
        check=_positive("depth.sync_tolerance_s", limits.MAX_SYNC_TOLERANCE_S),
    ),
    "depth.min_m": Spec(
        "float",
        limits.DEFAULT_DEPTH_MIN_M,
        "nearest valid depth (metres), below depth.max_m (a depth of 0 or NaN is never valid)",
        read_only=False,
        check=_in_range(0.0, limits.DEPTH_MAX_LIMIT_M),
    ),
    "depth.max_m": Spec(
        "float",
        limits.DEFAULT_DEPTH_MAX_M,
        "farthest valid depth (metres), above depth.min_m",
        read_only=False,
        check=_in_range(0.0, limits.DEPTH_MAX_LIMIT_M),
    ),
    "depth.min_points": Spec(
        "int",
        limits.DEFAULT_MIN_POINTS,
        "fewer valid depth points in an instance: it has no 3D",
        read_only=False,
        check=_count("depth.min_points", 1),
    ),
    "depth.object_depth_m": Spec(
        "float",
        limits.DEFAULT_OBJECT_DEPTH_M,
        "points farther than this from the median depth of the surface an instance is found on are background",
        read_only=False,
        check=_positive("depth.object_depth_m", limits.DEPTH_MAX_LIMIT_M),
    ),
    "points.stride": Spec(
        "int",
        limits.DEFAULT_POINT_STRIDE,
        "~/points takes every n-th pixel per row and column",
        read_only=False,
        check=_count("points.stride", 1, limits.MAX_POINT_STRIDE),
    ),
    "points.prompts": Spec(
        "str_list",
        [],
        "prompts whose instances' points (those their 3D box is made of) go into ~/points; empty: all",
        read_only=False,
    ),
    "tracking.enabled": Spec(
        "bool",
        True,
        "give each instance a track id kept from frame to frame, its age and its velocity; false: ids 0 (ends all "
        "tracks)",
        read_only=False,
    ),
    "tracking.max_missed_frames": Spec(
        "int",
        limits.DEFAULT_TRACK_MAX_MISSED,
        "frames a track outlives without its object (an occlusion, a short exit), then it ends; its id never returns",
        read_only=False,
        check=_count("tracking.max_missed_frames", 0, limits.TRACK_MAX_MISSED_LIMIT),
    ),
    "tracking.min_hits": Spec(
        "int",
        limits.DEFAULT_TRACK_MIN_HITS,
        "frames an object is seen before its track is reported (id 0 until then): a blob seen once is not a track",
        read_only=False,
        check=_count("tracking.min_hits", 1, limits.TRACK_MIN_HITS_LIMIT),
    ),
    "tracking.gate_m": Spec(
        "float",
        limits.DEFAULT_TRACK_GATE_M,
        "an instance with 3D continues a track only this close (metres) to the track's predicted position",
        read_only=False,
        check=_positive("tracking.gate_m", limits.TRACK_GATE_MAX_M),
    ),
    "tracking.min_iou": Spec(
        "float",
        limits.DEFAULT_TRACK_MIN_IOU,
        "without 3D, an instance continues a track only when its mask overlaps the track's predicted mask this much "
        "(IoU)",
        read_only=False,
        check=_positive("tracking.min_iou", 1.0),
    ),
    "tracking.velocity_smoothing": Spec(
        "float",
        limits.DEFAULT_VELOCITY_SMOOTHING,
        "weight of the newest measurement in a track's velocity average (1: no smoothing)",
        read_only=False,
        check=_positive("tracking.velocity_smoothing", 1.0),
    ),
    "temporal.enabled": Spec(
        "bool",
        False,
        "steady masks: average each prompt's probability map over frames, with a hysteresis (temporal.hysteresis)",
        read_only=False,
    ),
    "temporal.smoothing": Spec(
        "float",
        limits.DEFAULT_TEMPORAL_SMOOTHING,
        "weight of the newest frame in the average (1: none); lower is steadier and lags more",
        read_only=False,
        check=_positive("temporal.smoothing", 1.0),
    ),
    "temporal.hysteresis": Spec(
        "float",
        round(limits.DEFAULT_TEMPORAL_HYSTERESIS, 6),
        "a pixel of a steady mask turns on at `threshold` and off only below threshold x (1 - hysteresis)",
        read_only=False,
        check=_in_range(0.0, limits.TEMPORAL_HYSTERESIS_MAX),
    ),
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
    types, wanted, _ = _KINDS[spec.kind]
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
    reason = spec.check.reason(value) if spec.check else None
    return f"{name}: {reason} (got {value!r})" if reason else None


def value(node: Node, name: str) -> Any:
    """The parameter's current value as its kind (once `startup.checked_settings` found every value valid)."""
    return coerce(name, node.get_parameter(name).value)
