"""What the node's parts read from its parameters: one consistent set of values, made in one place.

Each reader takes `value(name)` (the parameter's value, already checked and coerced by `parameters`), so the
settings are built the same way at startup, when parameters change at runtime, and in the unit tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clipseg_ros.perception import PerceptionSettings
from clipseg_ros.perception.temporal_filter import TemporalSettings
from clipseg_ros.perception.tracking import TrackingSettings

Value = Callable[[str], Any]


@dataclass(frozen=True)
class InputSettings:
    """How the cameras subscribe (read-only parameters: fixed from configure to cleanup)."""

    compressed: bool
    depth: int
    reliability: str
    depth_sync_s: float | None  # None: no depth input

    @classmethod
    def read(cls, value: Value) -> InputSettings:
        return cls(
            compressed=value("image_transport") == "compressed",
            depth=value("qos.input_depth"),
            reliability=value("qos.input_reliability"),
            depth_sync_s=value("depth.sync_tolerance_s") if value("depth.enabled") else None,
        )


@dataclass(frozen=True)
class OutputSettings:
    overlay_alpha: float | None  # None: no overlay
    perception: PerceptionSettings
    with_probabilities: bool  # 32FC1 maps inside ~/segmentation
    tracking: TrackingSettings
    temporal: TemporalSettings


@dataclass(frozen=True)
class Settings:
    """The runtime-changeable parameters, replaced as a whole so the worker reads a consistent set."""

    prompts: tuple[str, ...]
    prompt_separator: str
    threshold: float
    max_rate_hz: float
    max_image_pixels: int
    outputs: OutputSettings

    @classmethod
    def read(cls, value: Value) -> Settings:
        """ValueError when the values do not fit together (a depth range)."""
        perception = PerceptionSettings(
            min_area=value("instances.min_area"),
            depth_min_m=value("depth.min_m"),
            depth_max_m=value("depth.max_m"),
            min_points=value("depth.min_points"),
            object_depth_m=value("depth.object_depth_m"),
            point_stride=value("points.stride"),
            point_labels=tuple(value("points.prompts")),
        )
        return cls(
            prompts=tuple(p.strip() for p in value("prompts")),
            prompt_separator=value("prompt_separator"),
            threshold=value("threshold"),
            max_rate_hz=value("max_rate_hz"),
            max_image_pixels=value("max_image_pixels"),
            outputs=OutputSettings(
                overlay_alpha=value("overlay.alpha") if value("overlay.enabled") else None,
                perception=perception,
                with_probabilities=value("segmentation.probabilities"),
                tracking=TrackingSettings(
                    enabled=value("tracking.enabled"),
                    max_missed_frames=value("tracking.max_missed_frames"),
                    min_hits=value("tracking.min_hits"),
                    gate_m=value("tracking.gate_m"),
                    min_iou=value("tracking.min_iou"),
                    velocity_smoothing=value("tracking.velocity_smoothing"),
                ),
                # One threshold turns a pixel on, steady or not; the hysteresis only adds where it turns off.
                temporal=TemporalSettings(
                    enabled=value("temporal.enabled"),
                    smoothing=value("temporal.smoothing"),
                    on_threshold=value("threshold"),
                    off_threshold=value("threshold") * (1 - value("temporal.hysteresis")),
                ),
            ),
        )
