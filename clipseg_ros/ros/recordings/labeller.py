"""Labelling a span of a recording: every colour frame of its cameras segmented, in batches, and the node's
outputs for it as messages stamped with the frame's log time.

The same parts as the node: image decoding (`image_codec`), depth pairing (`DepthSync`), the engine's batch and
`frame_outputs`. What differs is only the order: the node keeps each camera's newest frame; here no frame is
dropped, and a colour frame waits until every depth frame that could pair with it has been read.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage

from clipseg_ros.engine import limits
from clipseg_ros.engine.segmenter import Segmenter
from clipseg_ros.perception import DepthInput
from clipseg_ros.perception.camera_history import CameraHistory
from clipseg_ros.perception.temporal_filter import TemporalSettings
from clipseg_ros.perception.tracking import TrackingSettings
from clipseg_ros.ros.image_codec import ImageDecodeError, compressed_to_rgb, image_to_rgb
from clipseg_ros.ros.launch_args import NODE_NAME
from clipseg_ros.ros.node.camera import perceive_result
from clipseg_ros.ros.node.depth_sync import DepthSync
from clipseg_ros.ros.node.frame_outputs import OUTPUT_TYPES, frame_outputs
from clipseg_ros.ros.node.settings import Settings
from clipseg_ros.ros.recordings.bag_io import IMAGE_TYPES, BagError, BagReader, serialize

# What a recording gets by default: every output but the overlay (a second copy of the video, for viewing live).
RECORDED_OUTPUTS = ("mask", "probability", "label", "segmentation", "points", "markers", "camera_info")
_DEPTH_STOPPED_NS = round(limits.DEPTH_STREAM_LIVE_S * 1e9)
READ_AHEAD_BATCHES = 2  # decoded frames waiting for the model, in batches: decoding overlaps inference


@dataclass(frozen=True)
class CameraTopics:
    """Where one camera of the node's configuration is in a bag, and where its outputs go."""

    name: str  # "" for the only camera
    image: str
    camera_info: str
    depth: str | None  # None: no depth in this bag (or depth off): no 3D
    depth_info: str | None

    @property
    def output_prefix(self) -> str:
        """The node's own output names, as it publishes them with no namespace: /clipseg/[<camera>/]mask."""
        return f"/{NODE_NAME}/{self.name + '/' if self.name else ''}"

    @property
    def input_topics(self) -> tuple[str, ...]:
        return tuple(t for t in (self.image, self.camera_info, self.depth, self.depth_info) if t)


@dataclass(frozen=True, eq=False)
class Record:
    """One output message: its topic, the log time of the frame it is of, its type name and its CDR bytes (what
    a bag holds, and what crosses from a Ray worker to the writer)."""

    topic: str
    log_ns: int
    msgtype: str
    data: bytes


@dataclass(frozen=True, eq=False)
class LabelledFrame:
    """A colour frame's outputs (after the input messages read since the frame before, when they are copied), and
    its pixels as PNG when frames are exported."""

    image_topic: str
    log_ns: int
    stamp_ns: int
    records: tuple[Record, ...]
    png: bytes | None = None


@dataclass
class SpanCounts:
    frames: int = 0  # colour frames segmented
    skipped: Counter = field(default_factory=Counter)  # reason -> colour frames not segmented
    depth_ignored: Counter = field(default_factory=Counter)  # reason -> frames segmented without their depth

    def add(self, other: SpanCounts) -> None:
        self.frames += other.frames
        self.skipped.update(other.skipped)
        self.depth_ignored.update(other.depth_ignored)


@dataclass(eq=False)
class _Span:
    """What one `label` call works on; `trailing` gets the input copies read after the span's last frame."""

    reader: BagReader
    cameras: tuple[CameraTopics, ...]
    start_ns: int | None
    stop_ns: int | None
    counts: SpanCounts
    trailing: list[Record] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class _Frame:
    camera: CameraTopics
    log_ns: int
    msg: object  # Image or CompressedImage
    rgb: np.ndarray
    depth: DepthInput | None
    camera_info: CameraInfo | None
    inputs: tuple[Record, ...]  # input messages to copy, read since the frame before


def msgtype_name(msg_type: type) -> str:
    """`sensor_msgs/msg/Image` for rclpy's sensor_msgs.msg.Image."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


OUTPUT_MSGTYPES = {name: msgtype_name(msg_type) for name, msg_type in OUTPUT_TYPES.items()}


class SpanLabeller:
    """The node's work on recorded frames: one engine (loaded once), one configuration, any number of spans."""

    def __init__(
        self,
        segmenter: Segmenter,
        settings: Settings,
        outputs: Sequence[str] = RECORDED_OUTPUTS,
        batch: int = 1,
        depth_sync_s: float | None = None,
        copy_inputs: bool = False,
        export_images: bool = False,
    ) -> None:
        unknown = sorted(set(outputs) - set(OUTPUT_TYPES))
        if unknown:
            raise ValueError(f"unknown outputs {unknown}; the node's outputs are {', '.join(OUTPUT_TYPES)}")
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        if not settings.prompts:
            raise ValueError("no prompts: give some in the parameters file or with --prompts")
        self.segmenter, self.settings, self.outputs, self.batch = segmenter, settings, frozenset(outputs), batch
        self.depth_sync_s, self.copy_inputs, self.export_images = depth_sync_s, copy_inputs, export_images

    def label(
        self,
        reader: BagReader,
        cameras: Sequence[CameraTopics],
        start_ns: int | None,
        stop_ns: int | None,
        counts: SpanCounts,
    ) -> Iterator[LabelledFrame]:
        """The colour frames logged in [start_ns, stop_ns), labelled, in log order; then, when inputs are
        copied, the input messages of the span after its last frame.

        The span starts afresh (track ids from 1, no steady-mask history): a span is labelled alike wherever it
        runs. Raises BagError when the bag cannot be read on."""
        ids = itertools.count(1)
        histories = {c.name: CameraHistory(TrackingSettings(), TemporalSettings(), ids) for c in cameras}
        settings = self.settings
        span = _Span(reader, tuple(cameras), start_ns, stop_ns, counts)
        for batch in _batches(self._frames(span), self.batch):
            results = self.segmenter.segment_batch([f.rgb for f in batch], settings.prompts, settings.threshold)
            for frame, result in zip(batch, results, strict=True):
                counts.frames += 1
                messages = frame_outputs(
                    frame.msg.header,
                    frame.rgb,
                    result,
                    settings.outputs,
                    histories[frame.camera.name],
                    self.outputs,
                    lambda maps, f=frame: perceive_result(maps, settings.outputs.perception, f.depth, f.camera_info),
                    frame.camera_info,
                )
                records = [
                    Record(
                        frame.camera.output_prefix + name,
                        frame.log_ns,
                        OUTPUT_MSGTYPES[name],
                        serialize(m, OUTPUT_MSGTYPES[name]),
                    )
                    for name, m in messages.items()
                ]
                png = _png(frame.rgb) if self.export_images else None
                stamp = frame.msg.header.stamp
                yield LabelledFrame(
                    frame.camera.image, frame.log_ns, stamp.sec * 10**9 + stamp.nanosec, (*frame.inputs, *records), png
                )
        if span.trailing:
            yield LabelledFrame("", span.trailing[-1].log_ns, 0, tuple(span.trailing))

    def _frames(self, span: _Span) -> Iterator[_Frame]:
        """The decoded colour frames of the span with their depth, read and decoded in a thread of their own."""
        frames: queue.Queue = queue.Queue(maxsize=READ_AHEAD_BATCHES * self.batch)
        stop = threading.Event()

        def read() -> None:
            try:
                for frame in self._read(span):
                    while not stop.is_set():
                        try:
                            frames.put(frame, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                frames.put(None)
            except BaseException as exc:  # handed to the consumer, which raises it in its own thread
                frames.put(exc)

        thread = threading.Thread(target=read, name="clipseg-bag-reader", daemon=True)
        thread.start()
        try:
            while (item := frames.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()

    def _read(self, span: _Span) -> Iterator[_Frame]:
        reader, cameras, start_ns, stop_ns, counts = span.reader, span.cameras, span.start_ns, span.stop_ns, span.counts
        by_topic = {}
        for camera in cameras:
            depth = DepthSync(self.depth_sync_s) if camera.depth and self.depth_sync_s is not None else None
            by_topic[camera.image] = (camera, "image", depth)
            by_topic[camera.camera_info] = (camera, "camera_info", depth)
            if depth is not None:
                by_topic[camera.depth] = (camera, "depth", depth)
                by_topic[camera.depth_info] = (camera, "depth_info", depth)
        camera_infos: dict[str, CameraInfo] = {}
        # camera_info is often sent once or slowly: the last one before the span describes its first frames.
        before = [t for c in cameras for t in (c.camera_info, c.depth_info) if t]
        if start_ns is not None:
            for message in reader.messages(before, None, start_ns):
                camera, kind, depth = by_topic[message.topic]
                if kind == "camera_info":
                    camera_infos[camera.name] = message.msg
                elif depth is not None:
                    depth.set_camera_info(message.msg)
        # Depth frames a little before and after the span pair with its first and last colour frames.
        margin = round((self.depth_sync_s or 0.0) * 1e9) + 1
        read_from = None if start_ns is None else start_ns - margin
        read_to = None if stop_ns is None else stop_ns + margin
        waiting: deque[tuple[CameraTopics, int, object, DepthSync | None, tuple[Record, ...]]] = deque()
        copies: list[Record] = []  # input messages of the span read since the last colour frame
        carried: list[Record] = []  # the copies of frames that could not be decoded: they go with the next one
        for message in reader.messages(by_topic, read_from, read_to):
            camera, kind, depth = by_topic[message.topic]
            in_span = (start_ns is None or message.log_ns >= start_ns) and (stop_ns is None or message.log_ns < stop_ns)
            if self.copy_inputs and in_span:
                msgtype = msgtype_name(type(message.msg))
                copies.append(Record(message.topic, message.log_ns, msgtype, serialize(message.msg, msgtype)))
            if kind == "image":
                if in_span:
                    waiting.append((camera, message.log_ns, message.msg, depth, tuple(copies)))
                    copies = []
            elif kind == "camera_info":
                camera_infos[camera.name] = message.msg
            elif kind == "depth":
                depth.add_depth(message.msg)
            else:
                depth.set_camera_info(message.msg)
            while waiting and _settled(waiting[0], message.log_ns):
                if (frame := self._decoded(waiting.popleft(), camera_infos, counts, carried)) is not None:
                    yield frame
        while waiting:  # the end of the recording: no more depth can come
            if (frame := self._decoded(waiting.popleft(), camera_infos, counts, carried)) is not None:
                yield frame
        span.trailing.extend([*carried, *copies])

    def _decoded(
        self, item, camera_infos: dict[str, CameraInfo], counts: SpanCounts, carried: list[Record]
    ) -> _Frame | None:
        camera, log_ns, msg, depth_sync, inputs = item
        inputs = (*carried, *inputs)
        carried.clear()
        max_pixels = self.settings.max_image_pixels
        try:
            if isinstance(msg, CompressedImage):
                rgb = compressed_to_rgb(msg, max_pixels=max_pixels)
            else:
                rgb = image_to_rgb(msg, max_pixels=max_pixels)
        except ImageDecodeError as exc:  # counted and skipped: one bad frame does not end a recording
            counts.skipped[str(exc)] += 1
            carried.extend(inputs)
            return None
        depth = None
        if depth_sync is not None:
            try:
                depth = depth_sync.match(msg.header)
            except ValueError as exc:  # a broken depth frame costs its 3D, not the 2D outputs
                counts.depth_ignored[str(exc)] += 1
        return _Frame(camera, log_ns, msg, rgb, depth, camera_infos.get(camera.name), inputs)


def _settled(item, now_ns: int) -> bool:
    """Whether a colour frame's depth frame is known: read past it, or a depth stream this far behind is taken
    as stopped (as the node does), so that a recording whose depth ends does not hold back every frame."""
    _, log_ns, msg, depth_sync, _ = item
    return depth_sync is None or depth_sync.settled(msg.header) or now_ns - log_ns > _DEPTH_STOPPED_NS


def _png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode a {rgb.shape} frame as PNG")
    return data.tobytes()


def _batches(frames: Iterator[_Frame], size: int) -> Iterator[list[_Frame]]:
    batch: list[_Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def image_topics(topics: dict[str, str]) -> list[str]:
    """The topics of a bag that hold images, for a message that lists them."""
    return sorted(t for t, msgtype in topics.items() if msgtype in IMAGE_TYPES)


def resolve_cameras(
    topics: dict[str, str],
    names: Sequence[str],
    image_topics_given: dict[str, str],
    compressed: bool,
    depth_topics_given: dict[str, str],
    depth: bool,
) -> tuple[list[CameraTopics], list[str]]:
    """Each camera's topics in a bag with the node's names (`/image`, `/<camera>/image`, `/image/compressed`,
    `depth/image`; siblings `camera_info`) unless given; and the warnings (depth asked for but not recorded).
    BagError when a camera's image topic is not in the bag, listing the image topics it has."""
    cameras, warnings = [], []
    for name in names or [""]:
        base = f"/{name}/" if name else "/"
        image = image_topics_given.get(name) or f"{base}image" + ("/compressed" if compressed else "")
        if image not in topics and f"{image}/compressed" in topics:  # image_transport: the base name names both
            image = f"{image}/compressed"
        if image not in topics:
            listed = ", ".join(image_topics(topics)) or "none"
            raise BagError(f"no image topic {image}; this bag's image topics: {listed} (use --image-topic)")
        if topics[image] not in IMAGE_TYPES:
            raise BagError(f"{image} holds {topics[image]}, not sensor_msgs/msg/Image or CompressedImage")
        depth_topic = info = None
        if depth:
            depth_topic = depth_topics_given.get(name) or f"{base}depth/image"
            info = _sibling(depth_topic, "camera_info")
            if depth_topic not in topics or info not in topics:
                warnings.append(f"camera {name or '(default)'}: no {depth_topic} with {info} in the bag: no 3D")
                depth_topic = info = None
        cameras.append(CameraTopics(name, image, _sibling(image, "camera_info"), depth_topic, info))
    return cameras, warnings


def _sibling(image_topic: str, name: str) -> str:
    """camera_info beside an image topic, as image_transport pairs them (/cam/image/compressed: /cam/camera_info)."""
    base = image_topic.removesuffix("/compressed")
    return f"{base.rsplit('/', 1)[0]}/{name}"
