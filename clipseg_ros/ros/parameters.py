"""The node's parameters: one table of names, defaults, descriptions and checks.

`config/segment.yaml` carries the same defaults; `validate` is used both at startup and by the node's
on-set-parameters callback, so an invalid value is refused with the same reason either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.parameter import Parameter

from clipseg_ros import limits
from clipseg_ros.checkpoints import DEFAULT_WEIGHTS

TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
INPUT_RELIABILITIES = ("auto", *RELIABILITIES)


def _choice(options: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}"


def _in_range(low: float, high: float, *, open_low: bool = False, open_high: bool = False):
    def check(v: Any) -> str | None:
        ok_low = v > low if open_low else v >= low
        ok_high = v < high if open_high else v <= high
        if ok_low and ok_high:
            return None
        return f"must be in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"

    return check


def _prompts(v: Any) -> str | None:
    if len(v) > limits.MAX_PROMPTS:
        return f"at most {limits.MAX_PROMPTS} prompts"
    if any(not p.strip() for p in v):
        return "a prompt must not be empty or blank (an empty list pauses the output)"
    return None


def _input_size(v: Any) -> str | None:
    if len(v) != 2 or any(not 32 <= s <= 2048 for s in v):
        return "must be [height, width], each in 32..2048"
    return None


@dataclass(frozen=True)
class Spec:
    default: Any
    description: str
    read_only: bool = True
    check: Callable[[Any], str | None] | None = None
    type: int = ParameterType.PARAMETER_NOT_SET  # only needed where the default cannot tell (empty lists)


SPECS: dict[str, Spec] = {
    "weights": Spec(
        DEFAULT_WEIGHTS,
        "Hugging Face hub id or local path of CLIPSeg weights (HF or original format)",
        check=lambda v: None if v.strip() else "must name a hub id or a local path",
    ),
    "device": Spec(
        "auto",
        "torch device: auto (cuda if available), cpu, cuda, cuda:N",
        check=lambda v: (
            None if v == "auto" or v == "cpu" or v.startswith("cuda") else "must be auto, cpu, cuda or cuda:N"
        ),
    ),
    "precision": Spec(
        "fp32", "inference precision: fp32, fp16 or bf16 (fp16/bf16 on GPU)", check=_choice(limits.PRECISIONS)
    ),
    "input_size": Spec(
        [352, 352], "[height, width] the model sees; outputs are resized back to the frame", check=_input_size
    ),
    "cache_size": Spec(
        256, "prompt embeddings kept in memory (text and visual)", check=lambda v: None if v >= 0 else "must be >= 0"
    ),
    "image_transport": Spec(
        "raw", "raw: subscribe to `image`; compressed: to `image/compressed` (jpeg/png)", check=_choice(TRANSPORTS)
    ),
    "qos.input_reliability": Spec(
        "auto",
        "input QoS: auto matches the publishers (reliable if all are), else fixed",
        check=_choice(INPUT_RELIABILITIES),
    ),
    "qos.input_depth": Spec(
        1, "input queue depth (1: latest frame only)", check=lambda v: None if 1 <= v <= 100 else "must be in 1..100"
    ),
    "qos.output_reliability": Spec("reliable", "output QoS", check=_choice(RELIABILITIES)),
    "qos.output_depth": Spec(1, "output queue depth", check=lambda v: None if 1 <= v <= 100 else "must be in 1..100"),
    "prompts": Spec(
        [],
        "text prompts, one mask each; empty pauses the output",
        read_only=False,
        check=_prompts,
        type=ParameterType.PARAMETER_STRING_ARRAY,
    ),
    "prompt_separator": Spec(
        ";",
        'separates prompts in a ~/prompt message ("cup; red mug")',
        read_only=False,
        check=lambda v: None if v.strip() else "must not be empty or blank",
    ),
    "threshold": Spec(
        0.5,
        "probability above which a pixel is in a mask",
        read_only=False,
        check=_in_range(0.0, 1.0, open_low=True, open_high=True),
    ),
    "max_rate_hz": Spec(
        0.0,
        "most frames segmented per second (0: as fast as inference allows)",
        read_only=False,
        check=lambda v: None if v >= 0 else "must be >= 0",
    ),
    "overlay.enabled": Spec(True, "compute ~/overlay (only while someone subscribes)", read_only=False),
    "overlay.alpha": Spec(0.5, "overlay colour opacity", read_only=False, check=_in_range(0.0, 1.0)),
}


def declare(node: Node) -> None:
    for name, spec in SPECS.items():
        descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
        if spec.type == ParameterType.PARAMETER_NOT_SET:
            node.declare_parameter(name, spec.default, descriptor)
            continue
        # rclpy types an empty-list default as a byte array, and a params file's `[]` leaves the parameter
        # unset: declare the type alone, then the default unless an override gave a value.
        declared = node.declare_parameter(name, Parameter.Type(spec.type), descriptor)
        if declared.type_ == Parameter.Type.NOT_SET:
            node.set_parameters([Parameter(name, Parameter.Type(spec.type), spec.default)])


def validate(name: str, value: Any) -> str | None:
    """Why `value` is not acceptable for `name`, or None when it is."""
    spec = SPECS.get(name)
    if spec is None or spec.check is None:
        return None
    reason = spec.check(value)
    return f"{name}: {reason} (got {value!r})" if reason else None


def startup_errors(node: Node) -> list[str]:
    """Every invalid value the node was started with (from a params file or -p)."""
    errors = []
    for name in SPECS:
        reason = validate(name, node.get_parameter(name).value)
        if reason:
            errors.append(reason)
    return errors
