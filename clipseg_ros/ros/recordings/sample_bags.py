"""Sample recordings: the synthetic moving shapes written as bags, for tests, benchmarks and demos of offline labelling.

A colour stream (raw rgb8, raw bgr8 or JPEG), its camera_info and optionally an aligned depth stream with its own
camera_info, as a camera driver records them: header stamps at the frame times (depth a few ms off the colour), log
times a little after the stamps. Written with rosbags alone (no rclpy, no ROS installation): a rosbag2 folder in
MCAP or SQLite 3 storage, or a ROS 1 .bag. The content is `synthetic_sequence` (coloured shapes moving in 3D in
front of a wall, true depth), so whoever reads a bag back can compare against what `write_sample_bag` returns.

    bag = write_sample_bag(tmp_path / "shapes", SampleBagSpec(storage="mcap", image="compressed"))
    bag.topics   # {"/camera/image/compressed": "sensor_msgs/msg/CompressedImage", ...}

The same spec gives the same bytes with the same library versions. What ties bytes to versions: the MCAP header
names the writing library ("rosbags-0.11.9"), an SQLite file carries the SQLite version that wrote it, and JPEG
payloads are libjpeg's output.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Ros2Writer
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from clipseg_ros.perception.intrinsics import Intrinsics
from clipseg_ros.train.synthetic_sequence import LABELS, SequenceSettings, synthetic_sequence

STORAGES = ("mcap", "sqlite3", "ros1")
IMAGE_KINDS = ("raw", "compressed", "bgr8")
DEPTH_ENCODINGS = ("16UC1", "32FC1")
COLOUR_FRAME_ID = "camera_color_optical_frame"
DEPTH_FRAME_ID = "camera_depth_optical_frame"
# What a recorder on the camera's machine sees: each message logged a little after its stamp, depth later than
# colour (its own pipeline), so that depth may be logged after the colour frame of the next stamp.
COLOUR_RECEIVE_DELAY_NS = 2_000_000
DEPTH_RECEIVE_DELAY_NS = 3_000_000
# image_transport's format string for a JPEG of an rgb8 stream (OpenCV encodes BGR).
JPEG_FORMAT = "rgb8; jpeg compressed bgr8"
JPEG_QUALITY = 95
# 16UC1 holds whole millimetres: farther than this cannot be written and counts as invalid (0), as drivers do.
_MAX_16UC1_M = 65.535


@dataclass(frozen=True)
class SampleBagSpec:
    storage: str = "mcap"  # "mcap" | "sqlite3" (rosbag2) | "ros1" (a ROS 1 .bag file)
    frames: int = 12
    size: int = 64  # square image side, pixels
    rate_hz: float = 10.0
    image: str = "raw"  # "raw" (Image rgb8) | "compressed" (CompressedImage, JPEG) | "bgr8" (Image bgr8)
    depth: str | None = "16UC1"  # None | "16UC1" (millimetres) | "32FC1" (metres): aligned with the colour
    depth_offset_s: float = 0.004  # depth stamps this far after the colour stamps, as real cameras
    namespace: str = "/camera"  # {ns}/image (or {ns}/image/compressed), {ns}/camera_info, {ns}/depth/...
    seed: int = 0
    start_s: float = 1_700_000_000.0  # stamp of the first frame

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {self.storage!r}")
        if self.image not in IMAGE_KINDS:
            raise ValueError(f"image must be one of {IMAGE_KINDS}, got {self.image!r}")
        if self.depth is not None and self.depth not in DEPTH_ENCODINGS:
            raise ValueError(f"depth must be None or one of {DEPTH_ENCODINGS}, got {self.depth!r}")
        if self.frames < 1:
            raise ValueError(f"frames must be at least 1, got {self.frames}")
        # Smaller, the sequence's shapes are a few pixels and no object is ever visible enough to count.
        if self.size < 16:
            raise ValueError(f"size must be at least 16 pixels, got {self.size}")
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ValueError(f"rate_hz must be positive, got {self.rate_hz}")
        if not (self.namespace.startswith("/") and "//" not in self.namespace):
            raise ValueError(f"namespace must be absolute, such as /camera, got {self.namespace!r}")
        # Stamps hold int32 seconds in ROS 2 (uint32 in ROS 1): within both.
        first_s = self.start_s + min(self.depth_offset_s, 0.0)
        last_s = self.start_s + (self.frames - 1) / self.rate_hz + max(self.depth_offset_s, 0.0)
        if not (first_s >= 0 and last_s < 2**31):
            raise ValueError(f"start_s {self.start_s} with depth_offset_s {self.depth_offset_s} leaves the stamp range")

    def sequence_settings(self) -> SequenceSettings:
        """The sequence this spec records: `synthetic_sequence(spec.seed, spec.sequence_settings())` gives its
        ground truth (objects, masks, positions)."""
        # The sequence's least visible object (30 pixels) is for its 160-pixel frames; at 32 pixels no card is that
        # big and no frame would have an object. The same share of the frame instead.
        default = SequenceSettings()
        least = max(1, round(default.min_visible_px * (self.size / default.size) ** 2))
        return SequenceSettings(frames=self.frames, size=self.size, rate_hz=self.rate_hz, min_visible_px=least)

    def topic(self, name: str) -> str:
        return self.namespace.rstrip("/") + "/" + name


@dataclass(frozen=True, eq=False)
class SampleBag:
    path: Path  # the rosbag2 folder or the .bag file
    spec: SampleBagSpec
    topics: dict[str, str]  # topic -> msgtype ("sensor_msgs/msg/Image", also for ROS 1)
    stamps_ns: list[int]  # header stamps of the colour frames
    images: list[np.ndarray]  # (size, size, 3) uint8 RGB, as written before any compression
    # (size, size) float32 metres as the bag carries them (16UC1: the millimetres written / 1000), NaN where
    # invalid; None without depth.
    depth_m: list[np.ndarray] | None
    labels: tuple[str, ...]  # the prompts of the objects seen in at least one frame, in LABELS order


def write_sample_bag(path: Path, spec: SampleBagSpec = SampleBagSpec()) -> SampleBag:
    """Write the recording `spec` describes at `path`: a rosbag2 folder (mcap, sqlite3) or a .bag file (ros1).

    Refuses to overwrite (FileExistsError). The suffix must tell the kind, as readers (rosbags' AnyReader, ROS 1
    tools) tell them apart by it: ".bag" for ros1 and only for ros1.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists already; not overwriting")
    if (path.suffix == ".bag") != (spec.storage == "ros1"):
        raise ValueError(f"a {spec.storage} recording at {path}: ROS 1 bags end in .bag and only they do")
    settings = spec.sequence_settings()
    sequence = synthetic_sequence(spec.seed, settings)
    ros1 = spec.storage == "ros1"
    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_KILTED)
    messages = _Messages(store, ros1, settings.intrinsics())

    colour_topic = spec.topic("image/compressed" if spec.image == "compressed" else "image")
    topics = {
        colour_topic: "sensor_msgs/msg/CompressedImage" if spec.image == "compressed" else "sensor_msgs/msg/Image",
        spec.topic("camera_info"): "sensor_msgs/msg/CameraInfo",
    }
    if spec.depth is not None:
        topics[spec.topic("depth/image")] = "sensor_msgs/msg/Image"
        topics[spec.topic("depth/camera_info")] = "sensor_msgs/msg/CameraInfo"

    start_ns = round(spec.start_s * 1e9)
    depth_offset_ns = round(spec.depth_offset_s * 1e9)
    stamps_ns, images, depths = [], [], []
    records: list[tuple[int, str, Any]] = []  # (log time, topic, message)
    for index, frame in enumerate(sequence):
        stamp = start_ns + round(index * 1e9 / spec.rate_hz)
        stamps_ns.append(stamp)
        images.append(frame.image)
        colour = messages.header(stamp, COLOUR_FRAME_ID, index)
        if spec.image == "compressed":
            colour_msg = messages.compressed(colour, frame.image)
        else:
            pixels = frame.image[..., ::-1] if spec.image == "bgr8" else frame.image
            colour_msg = messages.image(colour, "rgb8" if spec.image == "raw" else "bgr8", pixels)
        records.append((stamp + COLOUR_RECEIVE_DELAY_NS, colour_topic, colour_msg))
        records.append((stamp + COLOUR_RECEIVE_DELAY_NS, spec.topic("camera_info"), messages.camera_info(colour)))
        if spec.depth is None:
            continue
        pixels, depth_m = _encode_depth(frame.depth, spec.depth)
        depths.append(depth_m)
        depth = messages.header(stamp + depth_offset_ns, DEPTH_FRAME_ID, index)
        log_ns = stamp + depth_offset_ns + DEPTH_RECEIVE_DELAY_NS
        records.append((log_ns, spec.topic("depth/image"), messages.image(depth, spec.depth, pixels)))
        records.append((log_ns, spec.topic("depth/camera_info"), messages.camera_info(depth)))
    # Log order, as a recorder writes; sort is stable, so an image stays before its camera_info.
    records.sort(key=lambda record: record[0])

    if ros1:
        _write_ros1(path, store, topics, records)
    else:
        plugin = StoragePlugin.MCAP if spec.storage == "mcap" else StoragePlugin.SQLITE3
        _write_ros2(path, plugin, store, topics, records)
    labels = {obj.label for frame in sequence for obj in frame.objects}
    return SampleBag(
        path=path,
        spec=spec,
        topics=topics,
        stamps_ns=stamps_ns,
        images=images,
        depth_m=depths if spec.depth is not None else None,
        labels=tuple(label for label in LABELS if label in labels),
    )


def corrupt_copy(src: Path, dst: Path, keep: float) -> Path:
    """A copy of the bag `src` at `dst` whose data file is cut to its first `keep` (0..1) share of bytes.

    What a recorder killed mid-write or a full disk leaves: a rosbag2 folder keeps its metadata.yaml whole (it
    promises messages the data no longer holds), a ROS 1 .bag is cut like any data file. Refuses to overwrite.
    """
    src, dst = Path(src), Path(dst)
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"keep must be within 0..1, got {keep}")
    if dst.exists():
        raise FileExistsError(f"{dst} exists already; not overwriting")
    if src.is_dir():
        data_files = [file for file in sorted(src.iterdir()) if file.name != "metadata.yaml"]
        if len(data_files) != 1:
            raise ValueError(f"{src} holds {len(data_files)} data files; a sample bag has one")
        shutil.copytree(src, dst)
        data = dst / data_files[0].name
    else:
        shutil.copyfile(src, dst)
        data = dst
    with data.open("r+b") as file:
        file.truncate(int(data.stat().st_size * keep))
    return dst


class _Messages:
    """The recording's messages in one typestore: ROS 1 and ROS 2 differ in the header's seq and in camera_info's
    field case (D, K, R, P against d, k, r, p)."""

    def __init__(self, store: Typestore, ros1: bool, camera: Intrinsics):
        self.types, self.ros1, self.camera = store.types, ros1, camera

    def header(self, stamp_ns: int, frame_id: str, seq: int) -> Any:
        stamp = self.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        extra = {"seq": seq} if self.ros1 else {}
        return self.types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id, **extra)

    def image(self, header: Any, encoding: str, pixels: np.ndarray) -> Any:
        # Little-endian on every host: is_bigendian is written 0.
        pixels = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<"))
        height, width = pixels.shape[:2]
        return self.types["sensor_msgs/msg/Image"](
            header=header,
            height=height,
            width=width,
            encoding=encoding,
            is_bigendian=0,
            step=pixels.nbytes // height,
            data=pixels.reshape(-1).view(np.uint8),
        )

    def compressed(self, header: Any, rgb: np.ndarray) -> Any:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG")
        return self.types["sensor_msgs/msg/CompressedImage"](header=header, format=JPEG_FORMAT, data=jpeg.reshape(-1))

    def camera_info(self, header: Any) -> Any:
        c = self.camera
        k = np.array([c.fx, 0.0, c.cx, 0.0, c.fy, c.cy, 0.0, 0.0, 1.0])
        p = np.array([c.fx, 0.0, c.cx, 0.0, 0.0, c.fy, c.cy, 0.0, 0.0, 0.0, 1.0, 0.0])
        matrices = {"D": np.zeros(5), "K": k, "R": np.eye(3).reshape(-1), "P": p}
        roi = self.types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        )
        return self.types["sensor_msgs/msg/CameraInfo"](
            header=header,
            height=c.height,
            width=c.width,
            distortion_model="plumb_bob",
            binning_x=0,
            binning_y=0,
            roi=roi,
            **{(name if self.ros1 else name.lower()): value for name, value in matrices.items()},
        )


def _encode_depth(depth: np.ndarray, encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """The depth image's pixels in `encoding` (REP 118: 16UC1 millimetres with 0 invalid, 32FC1 metres with NaN
    invalid) and the metres they carry, NaN where invalid."""
    valid = np.isfinite(depth) & (depth > 0)
    if encoding == "32FC1":
        metres = np.where(valid, depth, np.nan).astype(np.float32)
        return metres, metres
    valid &= depth <= _MAX_16UC1_M
    millimetres = np.where(valid, np.rint(depth * 1000.0), 0).astype(np.uint16)
    metres = np.where(millimetres > 0, millimetres / np.float32(1000), np.nan).astype(np.float32)
    return millimetres, metres


def _write_ros2(
    path: Path, plugin: StoragePlugin, store: Typestore, topics: dict[str, str], records: list[tuple[int, str, Any]]
) -> None:
    # No compression: rosbags compresses MCAP chunks with zstd only (CompressionMode.STORAGE), which test readers
    # would need zstd for; its chunks close at 1 MiB and carry no CRC either way.
    with Ros2Writer(path, version=Ros2Writer.VERSION_LATEST, storage_plugin=plugin) as writer:
        connections = {topic: writer.add_connection(topic, kind, typestore=store) for topic, kind in topics.items()}
        for log_ns, topic, msg in records:
            writer.write(connections[topic], log_ns, store.serialize_cdr(msg, topics[topic]))


def _write_ros1(path: Path, store: Typestore, topics: dict[str, str], records: list[tuple[int, str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # as the rosbag2 writer does for its folder
    with Ros1Writer(path) as writer:
        connections = {topic: writer.add_connection(topic, kind, typestore=store) for topic, kind in topics.items()}
        for log_ns, topic, msg in records:
            writer.write(connections[topic], log_ns, store.serialize_ros1(msg, topics[topic]))
