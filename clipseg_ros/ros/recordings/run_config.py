"""What a labelling run is made of: the node's parameters (its params file and the command line's overrides, checked
by the node's own specs), the options of the run, and the key that says when an output is up to date.

A `RunConfig` is plain data, so a Ray worker builds the same engine and labeller from it as the local run does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clipseg_ros.engine.backends.onnx_export import weights_digest
from clipseg_ros.ros.node import parameters
from clipseg_ros.ros.node.settings import Settings
from clipseg_ros.ros.node.startup import checked_settings, load_segmenter
from clipseg_ros.ros.recordings.bag_job import CameraOptions, code_digest
from clipseg_ros.ros.recordings.labeller import RECORDED_OUTPUTS, SpanLabeller

DEFAULT_CHUNK_S = 60.0  # a long bag is cut into spans this long, each labelled on its own (Ray spreads them)


def read_params_file(path: Path) -> dict[str, Any]:
    """The node's parameters in a ROS 2 params file (`/**:`, `clipseg:` or `/clipseg:` with `ros__parameters`),
    nested keys joined with dots as ROS does (`depth: {enabled: true}` is `depth.enabled`)."""
    try:
        document = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read parameters file {path}: {' '.join(str(exc).split())}") from exc
    for key in ("/**", "clipseg", "/clipseg"):
        section = document.get(key) if isinstance(document, dict) else None
        if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
            return _flatten(section["ros__parameters"])
    raise ValueError(f"{path}: no `/**:`, `clipseg:` or `/clipseg:` section with `ros__parameters`")


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for name, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


@dataclass(frozen=True)
class RunConfig:
    parameters: dict[str, Any]  # raw values by name (params file, then overrides); missing: the node's default
    cameras: CameraOptions = CameraOptions()
    outputs: tuple[str, ...] = RECORDED_OUTPUTS
    batch: int = 8
    chunk_s: float | None = DEFAULT_CHUNK_S
    copy_inputs: bool = False
    export_coco: bool = False
    export_images: bool = False
    unknown: tuple[str, ...] = field(default=())  # params file names the node does not have (warned about)

    @classmethod
    def make(cls, params: dict[str, Any], overrides: dict[str, Any], **options: Any) -> RunConfig:
        merged = {**params, **{k: v for k, v in overrides.items() if v is not None}}
        unknown = tuple(sorted(set(merged) - set(parameters.SPECS)))
        known = {k: v for k, v in merged.items() if k in parameters.SPECS}
        weights = known.get("weights")
        if isinstance(weights, str) and weights and Path(weights).exists():  # the same file for a Ray worker elsewhere
            known["weights"] = str(Path(weights).resolve())
        checked_settings(known.get)  # StartupError (exit code 2) naming every bad value, before any work
        names = tuple(parameters.coerce("cameras", known.get("cameras")) or ())
        cameras = CameraOptions(
            names=names,
            image_topics=options.pop("image_topics", {}),
            depth_topics=options.pop("depth_topics", {}),
            compressed=parameters.coerce("image_transport", known.get("image_transport")) == "compressed",
            depth=bool(parameters.coerce("depth.enabled", known.get("depth.enabled"))),
        )
        return cls(known, cameras, unknown=unknown, **options)

    def value(self, name: str) -> Any:
        return parameters.coerce(name, self.parameters.get(name))

    def settings(self) -> Settings:
        return checked_settings(self.parameters.get)

    @property
    def continuous(self) -> bool:
        """Frames that depend on the ones before them (tracks, steady masks): a bag is labelled in one span."""
        outputs = self.settings().outputs
        return outputs.tracking.enabled or outputs.temporal.enabled

    def labeller(self, log: Callable[[str], None]) -> SpanLabeller:
        """The engine on the configured weights and runtime, and the labeller around it (StartupError: exit code)."""
        segmenter = load_segmenter(self.value, log)
        settings = self.settings()
        depth_sync_s = self.value("depth.sync_tolerance_s") if self.cameras.depth else None
        return SpanLabeller(
            segmenter,
            settings,
            self.outputs,
            self.batch,
            depth_sync_s,
            copy_inputs=self.copy_inputs,
            export_images=self.export_images,
        )

    def key(self, weights_digest: str) -> str:
        """What makes an output up to date besides its input: every value that shapes it, the weights, the code."""
        values = {name: self.value(name) for name in parameters.SPECS if name != "autostart"}
        options = asdict(self)
        options.pop("parameters")
        options.pop("unknown")
        text = json.dumps({"parameters": values, "options": options}, sort_keys=True, default=list)
        return hashlib.sha256(f"{text} {weights_digest} {code_digest()}".encode()).hexdigest()


def model_digest(labeller: SpanLabeller) -> str:
    """sha256 of the loaded model's config and every tensor as it runs (precision included: the text encoder too,
    which an export's key leaves out)."""
    model = labeller.segmenter.model
    return weights_digest(model, model.state_dict().items())
