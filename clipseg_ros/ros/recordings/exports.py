"""Datasets and figures from a labelled recording, made from the Segmentation messages the labeller wrote (the
node's own output), never from a second computation.

A bag's part (`BagExport`) is kept beside its labelled bag, so a rerun that skips a finished bag still has it;
the run's COCO file and summary are put together from the parts of every bag.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipseg_ros.msg import Segmentation
from clipseg_ros.ros.image_codec import mask_to_numpy


def image_id(bag: str, topic: str, stamp_ns: int) -> int:
    """A COCO image id tied to the frame's bag, topic and stamp: the same frame has the same id in every run,
    and ids from different bags do not collide (52 bits: exact in JSON readers that use doubles)."""
    return int(hashlib.sha256(f"{bag}|{topic}|{stamp_ns}".encode()).hexdigest()[:13], 16)


def image_file(topic: str, stamp_ns: int) -> str:
    """Where an exported frame goes in its labelled bag's folder."""
    return f"images/{topic.strip('/').replace('/', '_')}/{stamp_ns}.png"


@dataclass
class PromptFigures:
    frames_with_detections: int = 0
    instances: int = 0
    area_sum: int = 0

    def as_dict(self) -> dict:
        mean = self.area_sum / self.instances if self.instances else 0.0
        return {
            "frames_with_detections": self.frames_with_detections,
            "instances": self.instances,
            "mean_area_px": round(mean, 1),
        }


@dataclass
class BagExport:
    """One bag's COCO images and annotations and its figures, from its Segmentation messages in order."""

    bag: str
    folder: str  # the labelled bag's folder name: exported frames are in it
    labels: tuple[str, ...]
    coco: bool = False
    frames: int = 0
    images: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)
    prompts: dict[str, PromptFigures] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prompts = {label: PromptFigures() for label in self.labels}

    def add(self, image_topic: str, msg: Segmentation) -> None:
        self.frames += 1
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        seen = set()
        for instance in msg.instances:
            figures = self.prompts.setdefault(instance.label, PromptFigures())
            figures.instances += 1
            figures.area_sum += instance.area
            seen.add(instance.label)
        for label in seen:
            self.prompts[label].frames_with_detections += 1
        if not self.coco:
            return
        height, width = (msg.masks[0].height, msg.masks[0].width) if msg.masks else (0, 0)
        number = image_id(self.bag, image_topic, stamp_ns)
        self.images.append(
            {
                "id": number,
                "file_name": f"{self.folder}/{image_file(image_topic, stamp_ns)}",
                "width": width,
                "height": height,
                "bag": self.bag,
                "topic": image_topic,
                "stamp_ns": stamp_ns,
            }
        )
        for instance in msg.instances:
            self.annotations.append(_annotation(number, instance, height, width))

    def figures(self) -> dict:
        return {"frames": self.frames, "prompts": {label: f.as_dict() for label, f in self.prompts.items()}}

    def to_json(self) -> bytes:
        return _dumps(
            {"bag": self.bag, "labels": list(self.labels), "images": self.images, "annotations": self.annotations}
            | self.figures()
        )


def _annotation(number: int, instance, height: int, width: int) -> dict:
    from pycocotools import mask as coco_mask  # only a COCO export needs it

    full = np.zeros((height, width), dtype=np.uint8)
    x, y = instance.bbox.x_offset, instance.bbox.y_offset
    crop = mask_to_numpy(instance.mask)
    full[y : y + crop.shape[0], x : x + crop.shape[1]] = crop > 0
    rle = coco_mask.encode(np.asfortranarray(full))
    return {
        "image_id": number,
        "category_id": instance.label_index + 1,
        "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
        "area": int(instance.area),
        "bbox": [x, y, instance.bbox.width, instance.bbox.height],
        "iscrowd": 0,
        "score": round(float(instance.score_mean), 4),
        "track_id": int(instance.track_id),
    }


def write_coco(parts: Sequence[dict], labels: Sequence[str], path: Path) -> Path:
    """The run's COCO instances file from the bags' parts (`BagExport.to_json`, read back): one category per
    prompt, annotation ids numbered in bag order."""
    images, annotations = [], []
    for part in parts:
        images += part["images"]
        annotations += part["annotations"]
    for number, annotation in enumerate(annotations, start=1):
        annotation["id"] = number
    categories = [{"id": i + 1, "name": label, "supercategory": "prompt"} for i, label in enumerate(labels)]
    _write_atomic(path, _dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def write_summary(parts: Sequence[dict], labels: Sequence[str], path: Path) -> tuple[Path, Path]:
    """Per-bag and per-prompt figures as JSON at `path`, and a plot beside it (.png): instances per prompt."""
    bags = {part["bag"]: {"frames": part["frames"], "prompts": part["prompts"]} for part in parts}
    totals = {}
    for label in labels:
        found = [bag["prompts"].get(label, {}) for bag in bags.values()]
        instances = sum(f.get("instances", 0) for f in found)
        area = sum(f.get("instances", 0) * f.get("mean_area_px", 0.0) for f in found)
        totals[label] = {
            "frames_with_detections": sum(f.get("frames_with_detections", 0) for f in found),
            "instances": instances,
            "mean_area_px": round(area / instances, 1) if instances else 0.0,
        }
    summary = {"frames": sum(b["frames"] for b in bags.values()), "prompts": totals, "bags": bags}
    _write_atomic(path, _dumps(summary))
    plot = path.with_suffix(".png")
    _plot(bags, labels, plot)
    return path, plot


def _plot(bags: dict, labels: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a robot or a cluster node
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(max(4.0, 1.2 * len(labels) * max(1, len(bags))), 3.5))
    width = 0.8 / max(1, len(bags))
    for i, (bag, figures) in enumerate(bags.items()):
        counts = [figures["prompts"].get(label, {}).get("instances", 0) for label in labels]
        axes.bar(np.arange(len(labels)) + i * width, counts, width, label=f"{bag} ({figures['frames']} frames)")
    axes.set_xticks(np.arange(len(labels)) + width * (len(bags) - 1) / 2, labels)
    axes.set_ylabel("instances")
    axes.legend(fontsize="small")
    figure.tight_layout()
    partial = path.with_name(path.name + ".partial.png")
    figure.savefig(partial, metadata={"Software": None})  # no version stamp: a rerun writes the same bytes
    pyplot.close(figure)
    partial.replace(path)


def _dumps(value: dict) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True).encode() + b"\n"


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
