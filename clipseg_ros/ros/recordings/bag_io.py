"""Recorded bags in and out with the `rosbags` library: rosbag2 (MCAP, sqlite3) and ROS 1 bags read without a
ROS installation or playback, a rosbag2 in MCAP written with every message definition embedded (what `ros2 bag
play`, rviz and Foxglove need).

Messages cross this boundary as the rclpy types the node itself receives and publishes, serialised by rclpy
(CDR): the node's decoding, depth pairing and message code take them unchanged, and a recording holds the bytes
the node would have sent. ROS 1 messages (no CDR; `seq` in headers, upper-case K/D/R/P in CameraInfo) are
copied field by field into their ROS 2 types.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

import clipseg_ros.msg

IMAGE_TYPES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}
INPUT_TYPES = {**IMAGE_TYPES, "sensor_msgs/msg/CameraInfo": CameraInfo}


class BagError(Exception):
    """A bag that cannot be read: its message names the bag and the reason, in one line."""


@dataclass(frozen=True)
class BagMessage:
    topic: str
    log_ns: int  # when the recorder received it (the bag's timestamp)
    msg: object  # rclpy message


def bag_files(path: Path) -> list[Path]:
    """The files a bag is made of (a rosbag2 folder's files, or the .bag file), in a stable order."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


class BagReader:
    """One bag, opened read-only; use as a context manager. Raises BagError for a bag that cannot be opened."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._reader = AnyReader([self.path])
            self._reader.open()
        except Exception as exc:  # rosbags raises many kinds for damaged files: each is this bag's problem
            raise BagError(f"{self.path}: cannot open: {_reason(exc)}") from exc
        self.is_ros1 = not self._reader.is2

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._reader.close()

    @property
    def topics(self) -> dict[str, str]:
        """Topic name -> message type (ROS 2 spelling, `sensor_msgs/msg/Image`)."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    def count(self, topic: str) -> int:
        """How many messages `topic` holds (from the bag's index: nothing is read)."""
        return sum(c.msgcount for c in self._reader.connections if c.topic == topic)

    @property
    def time_range_ns(self) -> tuple[int, int]:
        """The first and one past the last log time."""
        return self._reader.start_time, self._reader.end_time

    def messages(
        self, topics: Collection[str], start_ns: int | None = None, stop_ns: int | None = None
    ) -> Iterator[BagMessage]:
        """The messages of `topics` (images and camera_info) logged in [start_ns, stop_ns), in log order."""
        connections = [c for c in self._reader.connections if c.topic in topics]
        for connection in connections:
            if connection.msgtype not in INPUT_TYPES:
                raise BagError(
                    f"{self.path}: {connection.topic} holds {connection.msgtype}, not an image or camera_info"
                )
        if not connections:
            return
        try:
            for connection, log_ns, raw in self._reader.messages(connections, start=start_ns, stop=stop_ns):
                yield BagMessage(connection.topic, log_ns, self._decode(raw, connection.msgtype))
        except BagError:
            raise
        except Exception as exc:
            raise BagError(
                f"{self.path}: unreadable after {connection.topic if connections else ''}: {_reason(exc)}"
            ) from exc

    def _decode(self, raw: bytes, msgtype: str) -> object:
        ros_type = INPUT_TYPES[msgtype]
        if not self.is_ros1:
            return deserialize_message(bytes(raw), ros_type)
        return _copy_fields(self._reader.deserialize(raw, msgtype), ros_type())


def _copy_fields(source: object, target):
    """A rosbags message copied into the rclpy message `target`, field by field (ROS 1 names tolerated)."""
    for name, kind in target.get_fields_and_field_types().items():
        value = getattr(source, name, None)
        if value is None:
            value = getattr(source, name.upper())  # ROS 1 CameraInfo: K, D, R, P
        current = getattr(target, name)
        if hasattr(current, "get_fields_and_field_types"):
            setattr(target, name, _copy_fields(value, type(current)()))
        elif kind.startswith("sequence<uint8") or kind.startswith("uint8["):
            setattr(target, name, np.asarray(value, dtype=np.uint8).tobytes())
        elif isinstance(value, np.ndarray):
            setattr(target, name, value.tolist())
        else:
            setattr(target, name, value)
    return target


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


@functools.cache
def output_typestore():
    """Kilted's standard types and this package's interfaces: the definitions embedded in an output bag."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    # The .msg files are installed in share/clipseg_ros/msg of the prefix that holds the generated Python module
    # (lib/python3.X/site-packages/clipseg_ros/msg), in a colcon install as in this project's venv.
    interfaces = Path(clipseg_ros.msg.__file__).parents[5] / "share" / "clipseg_ros" / "msg"
    types = {}
    for msg_file in sorted(interfaces.glob("*.msg")):
        types.update(get_types_from_msg(msg_file.read_text(), f"clipseg_ros/msg/{msg_file.stem}"))
    typestore.register(types)
    return typestore


def serialize(msg: object, msgtype: str) -> bytes:
    """A message's CDR bytes as a bag stores them, the same bytes for the same message: rclpy's serialiser leaves
    the alignment padding as it finds it in memory, so its bytes are re-encoded (by rosbags, which zeroes it)."""
    typestore = output_typestore()
    return bytes(typestore.serialize_cdr(typestore.deserialize_cdr(serialize_message(msg), msgtype), msgtype))


class McapBagWriter:
    """A rosbag2 in MCAP, written under a temporary name and renamed into place by `commit`: an interrupted run
    leaves `<name>.partial`, never a folder that looks like a finished bag."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        if self.partial.exists():  # a run that was cut short: its leftovers are worthless
            _remove_tree(self.partial)
        self._typestore = output_typestore()
        self._writer = Writer(self.partial, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections: dict[str, object] = {}

    def write(self, topic: str, log_ns: int, msgtype: str, data: bytes) -> None:
        """A message's CDR bytes at `log_ns` on `topic`, as `msgtype` (`sensor_msgs/msg/Image`)."""
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self._typestore)
            self._connections[topic] = connection
        self._writer.write(connection, log_ns, data)

    def commit(self, extra_files: dict[str, bytes] | None = None) -> Path:
        """Close the bag, add `extra_files` beside its data, and rename it to its final name."""
        self._writer.close()
        for name, data in (extra_files or {}).items():
            (self.partial / name).write_bytes(data)
        # rosbag2 names its data file after the folder: keep that true for the final name.
        for data_file in self.partial.glob(f"{self.partial.name}*.mcap"):
            data_file.rename(data_file.with_name(data_file.name.replace(self.partial.name, self.path.name, 1)))
        metadata = self.partial / "metadata.yaml"
        metadata.write_text(metadata.read_text().replace(self.partial.name, self.path.name))
        if self.path.exists():
            _remove_tree(self.path)
        os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            _remove_tree(self.partial)


def _remove_tree(path: Path) -> None:
    for child in sorted(path.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    path.rmdir()
