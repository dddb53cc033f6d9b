"""How the node starts: the checks of configure (every parameter as started, then the weights), and any failure
of a lifecycle transition, as a StartupError (`reported`); the engine's log records in the node's log.

Its message is the one line the node logs, and its exit code is what the process ends with when the node
configures itself at start: EXIT_BAD_PARAMETERS for any value the node or the engine refuses (an ONNX file
that cannot be loaded or belongs to other weights or another input size included), EXIT_WEIGHTS_UNAVAILABLE
for weights that cannot be found or read (the demo falls back on that code), EXIT_TRANSITION_FAILED for any
other exception in a lifecycle transition.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn

from clipseg_ros.engine.backends import BackendUnavailable
from clipseg_ros.engine.backends.onnx_export import ExportError
from clipseg_ros.engine.checkpoints import CheckpointError
from clipseg_ros.engine.segmenter import Segmenter
from clipseg_ros.ros.node import parameters
from clipseg_ros.ros.node.settings import Settings

EXIT_BAD_PARAMETERS = 2
EXIT_WEIGHTS_UNAVAILABLE = 3
EXIT_TRANSITION_FAILED = 1


class StartupError(RuntimeError):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def checked_settings(given: Callable[[str], Any]) -> Settings:
    """The settings of the parameters as given (`given(name)`: the raw value, a params file's or -p's);
    StartupError naming every invalid value at once."""
    errors = [reason for name in parameters.SPECS if (reason := parameters.validate(name, given(name)))]
    if errors:
        raise StartupError("invalid parameters: " + "; ".join(errors), EXIT_BAD_PARAMETERS)
    try:
        return Settings.read(lambda name: parameters.coerce(name, given(name)))
    except ValueError as exc:  # values valid alone but not together
        raise StartupError(f"invalid parameters: {exc}", EXIT_BAD_PARAMETERS) from exc


def load_segmenter(value: Callable[[str], Any], log: Callable[[str], None]) -> Segmenter:
    """The engine on the configured weights, device, precision and runtime, warmed up."""
    weights = value("weights")
    log(f"loading weights {weights!r}")
    try:
        segmenter = Segmenter.from_pretrained(
            weights=weights,
            device=value("device"),
            precision=value("precision"),
            backend=value("backend"),
            int8=None if value("int8") == "none" else value("int8"),
            onnx_file=value("onnx_file") or None,
            input_size=tuple(value("input_size")),
            cache_size=value("cache_size"),
        )
    except CheckpointError as exc:
        raise StartupError(
            f"cannot load weights {weights!r}: {exc}\nGive a local checkpoint directory (config.json + "
            "model.safetensors) or file with `--ros-args -p weights:=/path/to/weights`, or `weights:=` in "
            "the params file.",
            EXIT_WEIGHTS_UNAVAILABLE,
        ) from exc
    # device, precision, size, backend or ONNX file (missing, unloadable, another model's) the engine refuses
    except (ValueError, BackendUnavailable, ExportError, FileNotFoundError) as exc:
        raise StartupError(f"invalid parameters: {exc}", EXIT_BAD_PARAMETERS) from exc
    segmenter.warmup()  # the first frame should not pay for allocation
    return segmenter


def reported(transition: Callable) -> Callable:
    """A lifecycle transition whose unexpected exception is logged with its reason and kept as the node's
    `failure`, so that an autostarting node exits with it: rclpy's lifecycle swallows the exception, and the node
    sat unconfigured."""

    @functools.wraps(transition)
    def run(node, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            return transition(node, state)
        except Exception as exc:
            reason = " ".join(str(exc).split())
            node.failure = StartupError(
                f"{transition.__name__.removeprefix('on_')} failed: {type(exc).__name__}: {reason}",
                EXIT_TRANSITION_FAILED,
            )
            node.get_logger().fatal(str(node.failure))
            return TransitionCallbackReturn.ERROR

    return run


class _RosLog(logging.Handler):
    def __init__(self, ros_logger) -> None:
        super().__init__(logging.INFO)
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.ros_logger.error(record.getMessage())
        elif record.levelno >= logging.WARNING:
            self.ros_logger.warning(record.getMessage())
        else:
            self.ros_logger.info(record.getMessage())


def forward_engine_logs(ros_logger) -> None:
    """The engine's log records (the precision auto picks and why, a cached export rebuilt) in the node's log."""
    engine = logging.getLogger("clipseg_ros.engine")
    engine.setLevel(logging.INFO)
    engine.addHandler(_RosLog(ros_logger))
    engine.propagate = False  # Python's last-resort handler would print the warnings a second time
