"""Sample bags read back by readers other than the writer's: rosbags' AnyReader for every storage, and the
independent mcap + mcap_ros2 packages for MCAP."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.highlevel import AnyReader, AnyReaderError

from clipseg_ros.ros.recordings.sample_bags import (
    COLOUR_FRAME_ID,
    COLOUR_RECEIVE_DELAY_NS,
    DEPTH_FRAME_ID,
    DEPTH_RECEIVE_DELAY_NS,
    IMAGE_KINDS,
    JPEG_FORMAT,
    JPEG_QUALITY,
    STORAGES,
    SampleBag,
    SampleBagSpec,
    _encode_depth,
    corrupt_copy,
    write_sample_bag,
)
from clipseg_ros.train.synthetic_sequence import LABELS, synthetic_sequence

FRAMES, SIZE = 5, 32


@dataclass
class Read:
    """One message as a reader gave it, with the field names of ROS 2 whatever the bag."""

    topic: str
    msgtype: str
    log_ns: int
    msg: object


def bag_path(root: Path, storage: str) -> Path:
    return root / ("sample.bag" if storage == "ros1" else "sample")


def read_any(bag: SampleBag) -> list[Read]:
    with AnyReader([bag.path]) as reader:
        return [
            Read(connection.topic, connection.msgtype, log_ns, reader.deserialize(raw, connection.msgtype))
            for connection, log_ns, raw in reader.messages()
        ]


def read_mcap(bag: SampleBag) -> list[Read]:
    (data_file,) = bag.path.glob("*.mcap")
    with data_file.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        return [
            Read(channel.topic, schema.name, message.log_time, decoded)
            for schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=True)
        ]


def field(msg: object, name: str) -> object:
    """camera_info's matrices: D, K, R, P in ROS 1, d, k, r, p in ROS 2."""
    return getattr(msg, name) if hasattr(msg, name) else getattr(msg, name.upper())


def stamp_ns(msg: object) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def pixels(msg: object, dtype: type) -> np.ndarray:
    data = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    return data.view(np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")).reshape(msg.height, msg.width, -1)


def check_recording(bag: SampleBag, messages: list[Read]) -> None:
    spec = bag.spec
    by_topic: dict[str, list[Read]] = defaultdict(list)
    for read in messages:
        by_topic[read.topic].append(read)
    assert {topic: reads[0].msgtype for topic, reads in by_topic.items()} == bag.topics
    assert all(len(reads) == spec.frames for reads in by_topic.values())
    log_times = [read.log_ns for read in messages]
    assert log_times == sorted(log_times)

    colour_topic = "/camera/image/compressed" if spec.image == "compressed" else "/camera/image"
    colour, info = by_topic[colour_topic], by_topic["/camera/camera_info"]
    assert [stamp_ns(read.msg) for read in colour] == bag.stamps_ns
    assert [stamp_ns(read.msg) for read in info] == bag.stamps_ns
    assert [read.log_ns for read in colour] == [stamp + COLOUR_RECEIVE_DELAY_NS for stamp in bag.stamps_ns]
    assert {read.msg.header.frame_id for read in colour + info} == {COLOUR_FRAME_ID}
    if spec.storage == "ros1":
        assert [read.msg.header.seq for read in colour] == list(range(spec.frames))
    for read, written in zip(colour, bag.images, strict=True):
        if spec.image == "compressed":
            assert read.msg.format == JPEG_FORMAT
            payload = bytes(read.msg.data)
            params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            assert payload == cv2.imencode(".jpg", np.ascontiguousarray(written[..., ::-1]), params)[1].tobytes()
            # The texture and sensor noise are what JPEG loses most of: about 25 dB at 32 pixels, 31 at 160.
            error = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] - written.astype(float)
            assert 10 * np.log10(255**2 / np.mean(error**2)) > 22
        else:
            assert read.msg.encoding == ("rgb8" if spec.image == "raw" else "bgr8")
            got = pixels(read.msg, np.uint8)
            np.testing.assert_array_equal(got if spec.image == "raw" else got[..., ::-1], written)
    for read in info:
        assert (read.msg.width, read.msg.height) == (SIZE, SIZE)
        assert read.msg.distortion_model == "plumb_bob"
        np.testing.assert_array_equal(field(read.msg, "k"), [SIZE, 0, SIZE / 2, 0, SIZE, SIZE / 2, 0, 0, 1])
        np.testing.assert_array_equal(field(read.msg, "d"), np.zeros(5))
        np.testing.assert_array_equal(field(read.msg, "r"), np.eye(3).reshape(-1))
        np.testing.assert_array_equal(field(read.msg, "p"), [SIZE, 0, SIZE / 2, 0, 0, SIZE, SIZE / 2, 0, 0, 0, 1, 0])

    if spec.depth is None:
        assert bag.depth_m is None
        return
    depth, depth_info = by_topic["/camera/depth/image"], by_topic["/camera/depth/camera_info"]
    offset_ns = round(spec.depth_offset_s * 1e9)
    assert [stamp_ns(read.msg) for read in depth] == [stamp + offset_ns for stamp in bag.stamps_ns]
    assert [stamp_ns(read.msg) for read in depth_info] == [stamp + offset_ns for stamp in bag.stamps_ns]
    assert [read.log_ns for read in depth] == [s + offset_ns + DEPTH_RECEIVE_DELAY_NS for s in bag.stamps_ns]
    assert {read.msg.header.frame_id for read in depth + depth_info} == {DEPTH_FRAME_ID}
    np.testing.assert_array_equal(field(depth_info[0].msg, "k"), field(info[0].msg, "k"))
    truth = synthetic_sequence(spec.seed, spec.sequence_settings())
    for read, written, frame in zip(depth, bag.depth_m, truth, strict=True):
        assert read.msg.encoding == spec.depth
        if spec.depth == "16UC1":
            millimetres = pixels(read.msg, np.uint16)[..., 0]
            metres = np.where(millimetres > 0, millimetres / np.float32(1000), np.nan)
            np.testing.assert_allclose(metres, frame.depth, atol=0.0005)
        else:
            metres = pixels(read.msg, np.float32)[..., 0]
            np.testing.assert_array_equal(metres, frame.depth)
        np.testing.assert_allclose(metres, written, rtol=1e-6)


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str | None], SampleBag]:
    root = tmp_path_factory.mktemp("sample_bags")
    written = {}
    for number, (storage, image, depth) in enumerate(
        (storage, image, depth) for storage in STORAGES for image in IMAGE_KINDS for depth in (None, "16UC1", "32FC1")
    ):
        spec = SampleBagSpec(storage=storage, image=image, depth=depth, frames=FRAMES, size=SIZE, seed=number % 3)
        written[storage, image, depth] = write_sample_bag(bag_path(root / str(number), storage), spec)
    return written


@pytest.mark.parametrize("depth", [None, "16UC1", "32FC1"])
@pytest.mark.parametrize("image", IMAGE_KINDS)
@pytest.mark.parametrize("storage", STORAGES)
def test_any_reader_reads_what_was_written(bags, storage: str, image: str, depth: str | None):
    bag = bags[storage, image, depth]
    assert bag.labels and set(bag.labels) <= set(LABELS)
    check_recording(bag, read_any(bag))


@pytest.mark.parametrize("depth", [None, "16UC1"])
@pytest.mark.parametrize("image", IMAGE_KINDS)
def test_mcap_library_reads_what_was_written(bags, image: str, depth: str | None):
    bag = bags["mcap", image, depth]
    check_recording(bag, read_mcap(bag))


def test_depth_may_be_logged_before_colour(tmp_path: Path):
    """A negative offset puts depth stamps (and log times) before the colour frame of the same stamp."""
    spec = SampleBagSpec(frames=3, size=SIZE, depth_offset_s=-0.01)
    bag = write_sample_bag(tmp_path / "early", spec)
    topics = [read.topic for read in read_mcap(bag)]
    assert topics[:4] == ["/camera/depth/image", "/camera/depth/camera_info", "/camera/image", "/camera/camera_info"]
    check_recording(bag, read_any(bag))


def test_invalid_depth_is_zero_millimetres_or_nan_metres():
    """The sequence's depth is valid everywhere (a wall behind the cards); a camera's has holes and far pixels."""
    depth = np.array([[1.2344, 0.0, np.nan], [np.inf, -1.0, 70.0]], np.float32)
    millimetres, metres = _encode_depth(depth, "16UC1")
    np.testing.assert_array_equal(millimetres, [[1234, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(metres, np.array([[1.234, np.nan, np.nan], [np.nan, np.nan, np.nan]], np.float32))
    pixels, metres = _encode_depth(depth, "32FC1")
    assert pixels is metres
    np.testing.assert_array_equal(metres, np.array([[1.2344, np.nan, np.nan], [np.nan, np.nan, 70.0]], np.float32))


@pytest.mark.parametrize("storage", STORAGES)
def test_same_spec_same_bytes(tmp_path: Path, storage: str):
    spec = SampleBagSpec(storage=storage, image="compressed", frames=3, size=SIZE)
    first = write_sample_bag(bag_path(tmp_path / "a", storage), spec).path
    second = write_sample_bag(bag_path(tmp_path / "b", storage), spec).path
    files = sorted(p.relative_to(first) for p in first.rglob("*")) if first.is_dir() else [Path()]
    assert files
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_refuses_to_overwrite_and_a_misleading_suffix(tmp_path: Path):
    spec = SampleBagSpec(frames=2, size=SIZE)
    write_sample_bag(tmp_path / "bag", spec)
    with pytest.raises(FileExistsError):
        write_sample_bag(tmp_path / "bag", spec)
    with pytest.raises(ValueError, match="end in .bag"):
        write_sample_bag(tmp_path / "other.bag", spec)
    with pytest.raises(ValueError, match="end in .bag"):
        write_sample_bag(tmp_path / "other", SampleBagSpec(storage="ros1", frames=2, size=SIZE))


@pytest.mark.parametrize(
    "settings",
    [
        {"storage": "bag"},
        {"image": "png"},
        {"depth": "mono16"},
        {"frames": 0},
        {"size": 8},
        {"rate_hz": 0.0},
        {"namespace": "cam"},
        {"start_s": 2.0**31},
        {"start_s": 0.0, "depth_offset_s": -0.004},
    ],
)
def test_spec_refuses_what_it_cannot_write(settings: dict):
    with pytest.raises(ValueError):
        SampleBagSpec(**settings)


@pytest.mark.parametrize("storage", ["mcap", "ros1"])
def test_corrupt_copy_cuts_the_data_file(bags, tmp_path: Path, storage: str):
    bag = bags[storage, "raw", None]
    cut = corrupt_copy(bag.path, bag_path(tmp_path, storage), keep=0.5)
    if storage == "ros1":
        source, target = bag.path, cut
    else:
        assert (cut / "metadata.yaml").read_bytes() == (bag.path / "metadata.yaml").read_bytes()
        ((source, target),) = [(file, cut / file.name) for file in bag.path.glob("*.mcap")]
    assert target.read_bytes() == source.read_bytes()[: source.stat().st_size // 2]
    with pytest.raises(AnyReaderError), AnyReader([cut]) as reader:
        list(reader.messages())
    with pytest.raises(FileExistsError):
        corrupt_copy(bag.path, cut, keep=0.5)
    with pytest.raises(ValueError):
        corrupt_copy(bag.path, tmp_path / "other", keep=1.5)
