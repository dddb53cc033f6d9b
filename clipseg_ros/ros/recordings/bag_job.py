"""One bag's labelling as a job: where its output goes, what makes it up to date, its spans, and its writing.

Safe with a user's data: the input is only read; the output is written under `<name>.partial` and renamed when
complete, its manifest last inside it, so a bag that looks finished is finished. A finished output whose key
(the input's bytes, the run's parameters and options, the weights and this package's code) matches is kept,
not relabelled; the same key gives the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import clipseg_ros
from clipseg_ros.ros.recordings.bag_io import BagError, BagReader, McapBagWriter, bag_files
from clipseg_ros.ros.recordings.exports import BagExport, image_file
from clipseg_ros.ros.recordings.labeller import CameraTopics, LabelledFrame, SpanCounts, resolve_cameras

MANIFEST = "clipseg_labels.json"  # inside a finished output: its key and counts
EXPORT_PART = "clipseg_export.json"  # inside a finished output: its COCO part and figures
OUTPUT_SUFFIX = "_labels"
DIGEST_CHUNK = 1 << 20

Span = tuple[int | None, int | None]


@dataclass(frozen=True)
class CameraOptions:
    """How the node's cameras are found in a bag (`resolve_cameras`)."""

    names: tuple[str, ...] = ()
    image_topics: dict[str, str] = field(default_factory=dict)  # camera name ("" for one) -> topic
    depth_topics: dict[str, str] = field(default_factory=dict)
    compressed: bool = False
    depth: bool = False

    def resolve(self, topics: dict[str, str]) -> tuple[list[CameraTopics], list[str]]:
        return resolve_cameras(topics, self.names, self.image_topics, self.compressed, self.depth_topics, self.depth)


@dataclass
class BagOutcome:
    bag: Path
    status: str  # labelled, up to date, failed
    output: Path | None = None
    frames: int = 0
    seconds: float = 0.0
    reason: str = ""  # why it failed, or what was skipped or warned about
    export: dict | None = None  # its export part, read back (for the run's COCO file and summary)


def output_path(bag: Path, out_dir: Path) -> Path:
    return out_dir / f"{bag.name.removesuffix('.bag')}{OUTPUT_SUFFIX}"


def input_digest(bag: Path) -> str:
    """sha256 over the bag's files (names and bytes), read-only."""
    digest = hashlib.sha256()
    for path in bag_files(bag):
        digest.update(str(path.relative_to(bag) if bag.is_dir() else path.name).encode())
        with path.open("rb") as stream:
            while chunk := stream.read(DIGEST_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


@functools.cache
def code_digest() -> str:
    """sha256 of this package's Python sources: a change to the code that labels makes outputs out of date."""
    digest = hashlib.sha256()
    root = Path(clipseg_ros.__file__).resolve().parent
    for source in sorted(root.rglob("*.py")):
        digest.update(str(source.relative_to(root)).encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def plan_spans(reader: BagReader, chunk_s: float | None, continuous: bool) -> list[Span]:
    """The bag cut into spans of `chunk_s` seconds of log time (the first and last open-ended), or one span when
    frames depend on the frames before them (`continuous`: tracking, steady masks) or chunks are off."""
    start, end = reader.time_range_ns
    if continuous or not chunk_s or end <= start:
        return [(None, None)]
    step = round(chunk_s * 1e9)
    cuts = list(range(start + step, end, step))
    return list(zip([None, *cuts], [*cuts, None], strict=True))


class BagJob:
    """A bag's output: up to date or not, and its writing from labelled frames in span order."""

    def __init__(self, bag: Path, out_dir: Path, run_key: str, labels: Sequence[str], coco: bool) -> None:
        self.bag, self.output = Path(bag), output_path(Path(bag), out_dir)
        self.run_key, self.labels, self.coco = run_key, tuple(labels), coco
        self._key: str | None = None

    @property
    def name(self) -> str:
        return self.output.name.removesuffix(OUTPUT_SUFFIX)

    def key(self) -> str:
        if self._key is None:
            self._key = hashlib.sha256(f"{input_digest(self.bag)} {self.run_key}".encode()).hexdigest()
        return self._key

    def finished(self) -> dict | None:
        """The export part of an up-to-date finished output, None when there is none (or it is out of date)."""
        try:
            manifest = json.loads((self.output / MANIFEST).read_text())
            if manifest.get("key") != self.key():
                return None
            return json.loads((self.output / EXPORT_PART).read_text())
        except (OSError, ValueError):
            return None

    def write(
        self, cameras: Sequence[CameraTopics], spans: Iterable[Iterable[LabelledFrame]], on_frame: Callable[[], None]
    ) -> tuple[Path, dict]:
        """Write the labelled frames of the bag's spans, in order, then commit; returns the output and its export
        part. A failure leaves no finished-looking output (the partial folder is removed)."""
        writer = McapBagWriter(self.output)
        export = BagExport(self.name, self.output.name, self.labels, coco=self.coco)
        segmentation = {c.output_prefix + "segmentation": c.image for c in cameras}
        try:
            for frames in spans:
                for frame in frames:
                    for record in frame.records:
                        writer.write(record.topic, record.log_ns, record.msgtype, record.data)
                        if record.topic in segmentation:
                            export.add(segmentation[record.topic], _segmentation(record.data))
                    if frame.png is not None:
                        target = writer.partial / image_file(frame.image_topic, frame.stamp_ns)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(frame.png)
                    if frame.image_topic:
                        on_frame()
            part = export.to_json()
            manifest = json.dumps({"bag": self.bag.name, "key": self.key(), "frames": export.frames}, indent=1)
            writer.commit({EXPORT_PART: part, MANIFEST: manifest.encode() + b"\n"})
        except BaseException:
            writer.abort()
            raise
        return self.output, json.loads(part)


def _segmentation(data: bytes):
    from rclpy.serialization import deserialize_message

    from clipseg_ros.msg import Segmentation

    return deserialize_message(data, Segmentation)


def label_locally(
    job: BagJob,
    label_span: Callable[[BagReader, Sequence[CameraTopics], Span, SpanCounts], Iterable[LabelledFrame]],
    cameras: CameraOptions,
    chunk_s: float | None,
    continuous: bool,
    on_frame: Callable[[], None],
) -> BagOutcome:
    """Label one bag in this process: its spans one after the other, as a cluster would hand them out."""
    started = time.monotonic()
    counts = SpanCounts()
    try:
        with BagReader(job.bag) as reader:
            found, warnings = cameras.resolve(reader.topics)
            spans = plan_spans(reader, chunk_s, continuous)
            output, export = job.write(found, (label_span(reader, found, span, counts) for span in spans), on_frame)
    except BagError as exc:
        return BagOutcome(job.bag, "failed", reason=str(exc), seconds=time.monotonic() - started)
    return BagOutcome(
        job.bag,
        "labelled",
        output,
        counts.frames,
        time.monotonic() - started,
        describe(counts, warnings),
        export,
    )


def frames_in(bag: Path, cameras: CameraOptions) -> int:
    """The colour frames a bag holds for these cameras, from its index (0 when it cannot be read: it fails later,
    with its reason)."""
    try:
        with BagReader(bag) as reader:
            found, _ = cameras.resolve(reader.topics)
            return sum(reader.count(c.image) for c in found)
    except BagError:
        return 0


def describe(counts: SpanCounts, warnings: Sequence[str]) -> str:
    """The table's note of a labelled bag: frames skipped and why, depth ignored, warnings."""
    notes = [f"{n} frames skipped: {reason}" for reason, n in sorted(counts.skipped.items())]
    notes += [f"{n} frames without 3D: {reason}" for reason, n in sorted(counts.depth_ignored.items())]
    return "; ".join([*notes, *warnings])
