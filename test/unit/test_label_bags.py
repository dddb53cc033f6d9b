"""clipseg-label-bags on bags the tests write (rosbag2 MCAP and sqlite3, ROS 1; raw, bgr8 and JPEG colour; 16UC1
and 32FC1 depth), read back by rosbags and by the independent mcap + mcap_ros2 readers (issue 20).

What the masks are is the engine's and the node's business (test/ros/test_label_bags_vs_node.py checks that a
labelled bag holds what the node publishes); here: every frame labelled, the bags' structure and definitions,
safety with the user's data, reruns, failures, exports.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bag_helpers import PROMPTS, digests, label
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import Image

from clipseg_ros.commands.label_bags import main
from clipseg_ros.msg import Segmentation
from clipseg_ros.ros.image_codec import image_to_numpy, mask_to_numpy
from clipseg_ros.ros.recordings.sample_bags import SampleBagSpec, corrupt_copy, write_sample_bag

OUTPUT_TOPICS = {"mask", "probability", "label", "segmentation", "points", "markers", "camera_info"}


@pytest.fixture(scope="module")
def params_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("params") / "segment.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    device: cpu\n    precision: fp32\n    input_size: [64, 64]\n"
        "    threshold: 0.3\n    depth:\n      enabled: true\n      min_points: 5\n    instances:\n      min_area: 4\n"
    )
    return path


def read_outputs(bag: Path) -> dict[str, list[tuple[int, bytes]]]:
    with AnyReader([bag]) as reader:
        topics: dict[str, list[tuple[int, bytes]]] = {}
        for connection, log_ns, raw in reader.messages():
            topics.setdefault(connection.topic, []).append((log_ns, bytes(raw)))
    return topics


def colour_log_times(bag: Path, topic: str) -> list[int]:
    with AnyReader([bag]) as reader:
        return [log_ns for _, log_ns, _ in reader.messages([c for c in reader.connections if c.topic == topic])]


@pytest.mark.parametrize(
    "spec",
    [
        SampleBagSpec(storage="mcap", frames=6, image="raw", depth="16UC1"),
        SampleBagSpec(storage="sqlite3", frames=5, image="bgr8", depth="32FC1"),
        SampleBagSpec(storage="ros1", frames=5, image="compressed", depth="16UC1"),
    ],
    ids=["mcap-raw-16UC1", "sqlite3-bgr8-32FC1", "ros1-jpeg-16UC1"],
)
def test_every_frame_labelled_at_its_log_time(spec, params_file, tiny_checkpoint, tmp_path):
    name = "in.bag" if spec.storage == "ros1" else "in"
    sample = write_sample_bag(tmp_path / name, spec)
    before = digests(sample.path)
    assert label(params_file, tiny_checkpoint, tmp_path / "out", sample.path) == 0
    assert digests(sample.path) == before  # the input is only read
    output = tmp_path / "out" / "in_labels"
    topics = read_outputs(output)
    assert set(topics) == {f"/clipseg/{name}" for name in OUTPUT_TOPICS}
    image_topic = "/camera/image/compressed" if spec.image == "compressed" else "/camera/image"
    colour = colour_log_times(sample.path, image_topic)
    for name, messages in topics.items():
        assert [log_ns for log_ns, _ in messages] == colour, name  # every frame, at its input's log time
    for (_, raw), stamp_ns, rgb in zip(topics["/clipseg/mask"], sample.stamps_ns, sample.images, strict=True):
        mask = deserialize_message(raw, Image)
        assert mask.header.stamp.sec * 10**9 + mask.header.stamp.nanosec == stamp_ns
        assert (mask.width, mask.height, mask.encoding) == (rgb.shape[1], rgb.shape[0], "mono8")
    segmentation = [deserialize_message(raw, Segmentation) for _, raw in topics["/clipseg/segmentation"]]
    assert all(s.labels == ["red square", "blue circle"] and s.has_depth for s in segmentation)
    assert not list(tmp_path.glob("out/*.partial"))


def test_an_independent_reader_decodes_every_output(params_file, tiny_checkpoint, tmp_path):
    """The definitions embedded in the MCAP are enough for a reader that knows nothing of this package."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    sample = write_sample_bag(tmp_path / "in", SampleBagSpec(frames=4))
    assert label(params_file, tiny_checkpoint, tmp_path / "out", sample.path, extra=("--copy-inputs",)) == 0
    (data_file,) = (tmp_path / "out" / "in_labels").glob("*.mcap")
    decoded: dict[str, list] = {}
    with data_file.open("rb") as stream:
        for schema, channel, _, msg in make_reader(
            stream, decoder_factories=[DecoderFactory()]
        ).iter_decoded_messages():
            decoded.setdefault(channel.topic, []).append((schema.name, msg))
    assert decoded["/clipseg/segmentation"][0][0] == "clipseg_ros/msg/Segmentation"
    assert all(len(v) == 4 for k, v in decoded.items() if k.startswith("/clipseg/"))
    label_image = decoded["/clipseg/label"][2][1]
    assert (label_image.encoding, label_image.width) == ("mono8", 64)
    # --copy-inputs: the input topics beside the outputs, the same messages
    assert len(decoded["/camera/image"]) == len(decoded["/camera/depth/image"]) == 4
    first = decoded["/camera/image"][0][1]
    assert np.array_equal(np.frombuffer(bytes(first.data), np.uint8).reshape(64, 64, 3), sample.images[0])


def test_a_rerun_skips_finished_bags_and_relabelling_gives_the_same_bytes(
    params_file, tiny_checkpoint, tmp_path, capsys
):
    sample = write_sample_bag(tmp_path / "in", SampleBagSpec(frames=4))
    out = tmp_path / "out"
    assert label(params_file, tiny_checkpoint, out, sample.path) == 0
    first = digests(out / "in_labels")
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "in_labels").iterdir()}
    capsys.readouterr()
    assert label(params_file, tiny_checkpoint, out, sample.path) == 0
    assert "up to date" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / "in_labels").iterdir()} == mtimes  # not rewritten
    # Other parameters: out of date, labelled again.
    assert label(params_file, tiny_checkpoint, out, sample.path, extra=("--outputs", "mask,label")) == 0
    assert set(read_outputs(out / "in_labels")) == {"/clipseg/mask", "/clipseg/label"}
    # Back to the first parameters, into a fresh folder: byte for byte the first output.
    assert label(params_file, tiny_checkpoint, tmp_path / "again", sample.path) == 0
    assert digests(tmp_path / "again" / "in_labels") == first


def test_a_corrupt_bag_fails_alone_with_its_name_and_reason(params_file, tiny_checkpoint, tmp_path, capsys):
    good = write_sample_bag(tmp_path / "good", SampleBagSpec(frames=4))
    broken = corrupt_copy(good.path, tmp_path / "broken", keep=0.5)
    missing = tmp_path / "not_there"
    assert label(params_file, tiny_checkpoint, tmp_path / "out", broken, good.path, missing) == 1
    table = capsys.readouterr().out
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert "failed" in rows[str(broken)] and str(broken) in rows[str(broken)]
    assert "failed" in rows[str(missing)] and "missing" in rows[str(missing)]
    assert "labelled" in rows[str(good.path)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_labels"]  # no half bag of the broken one


def test_a_missing_image_topic_lists_the_bags_image_topics(params_file, tiny_checkpoint, tmp_path, capsys):
    sample = write_sample_bag(tmp_path / "in", SampleBagSpec(frames=2))
    args = (str(sample.path), "--params-file", str(params_file), "--weights", str(tiny_checkpoint))
    assert main([*args, "--prompts", PROMPTS, "--image-topic", "/front/image", "--output", str(tmp_path / "o")]) == 1
    note = capsys.readouterr().out
    assert "no image topic /front/image" in note and "/camera/image" in note and "/camera/depth/image" in note


def test_an_unknown_encoding_is_counted_and_skipped(params_file, tiny_checkpoint, tmp_path, capsys):
    typestore = get_typestore(Stores.ROS2_KILTED)
    Image_, Header, Time = (
        typestore.types[n] for n in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time")
    )
    bag = tmp_path / "yuv"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/camera/image", Image_.__msgtype__, typestore=typestore)
        for i, encoding in enumerate(["rgb8", "yuv422_yuy2", "rgb8"]):
            header = Header(stamp=Time(sec=100 + i, nanosec=0), frame_id="cam")
            pixels = np.full((16, 16, 3 if encoding == "rgb8" else 2), 90, np.uint8)
            step = 16 * pixels.shape[2]
            msg = Image_(
                header=header,
                height=16,
                width=16,
                encoding=encoding,
                is_bigendian=0,
                step=step,
                data=pixels.reshape(-1),
            )
            writer.write(connection, (100 + i) * 10**9, typestore.serialize_cdr(msg, Image_.__msgtype__))
    assert label(params_file, tiny_checkpoint, tmp_path / "out", bag) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert "labelled" in row and "1 frames skipped: unsupported encoding 'yuv422_yuy2'" in row
    assert len(read_outputs(tmp_path / "out" / "yuv_labels")["/clipseg/mask"]) == 2


def test_coco_export_and_summary_come_from_the_labelled_instances(params_file, tiny_checkpoint, tmp_path):
    from pycocotools import mask as coco_mask
    from pycocotools.coco import COCO

    bags = [
        write_sample_bag(tmp_path / name, SampleBagSpec(frames=3, seed=seed)) for name, seed in (("a", 0), ("b", 1))
    ]
    out = tmp_path / "out"
    extra = ("--export", "coco", "--export-images", "--summary")
    assert label(params_file, tiny_checkpoint, out, *(b.path for b in bags), extra=extra) == 0
    coco = COCO(str(out / "coco_instances.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["red square", "blue circle"]
    assert len(coco.getImgIds()) == 6 and len({i["bag"] for i in coco.imgs.values()}) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 6 and (out / "summary.png").stat().st_size > 0
    instances = 0
    for (_, raw), bag in [(m, "a") for m in read_outputs(out / "a_labels")["/clipseg/segmentation"]]:
        msg = deserialize_message(raw, Segmentation)
        stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        (image,) = [i for i in coco.imgs.values() if i["bag"] == bag and i["stamp_ns"] == stamp_ns]
        assert (out / image["file_name"]).is_file()
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert len(annotations) == len(msg.instances)
        for annotation, instance in zip(annotations, msg.instances, strict=True):
            decoded = coco_mask.decode(annotation["segmentation"])
            x, y = instance.bbox.x_offset, instance.bbox.y_offset
            crop = mask_to_numpy(instance.mask)
            assert decoded.sum() == instance.area
            assert np.array_equal(decoded[y : y + crop.shape[0], x : x + crop.shape[1]] > 0, crop > 0)
            assert annotation["category_id"] == instance.label_index + 1
        instances += len(msg.instances)
    assert summary["bags"]["a"]["frames"] == 3
    assert sum(p["instances"] for p in summary["bags"]["a"]["prompts"].values()) == instances


def test_bad_parameters_are_refused_before_any_work(tiny_checkpoint, tmp_path, caplog):
    sample = write_sample_bag(tmp_path / "in", SampleBagSpec(frames=2))
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    threshold: 1.5\n    backend: tflite\n")
    args = [str(sample.path), "--weights", str(tiny_checkpoint), "--prompts", PROMPTS, "--output", str(tmp_path / "o")]
    assert main([*args, "--params-file", str(bad)]) == 2
    assert "threshold" in caplog.text and "backend" in caplog.text  # every bad value at once
    assert main([*args, "--weights", str(tmp_path / "nowhere")]) == 3
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("offset_s, paired", [(0.02, True), (-0.03, True), (0.2, False)])
def test_depth_pairs_by_stamp_within_the_tolerance(offset_s, paired, params_file, tiny_checkpoint, tmp_path):
    """Depth logged after its colour frame still pairs (the labeller reads ahead), as does depth before it; depth
    stamped farther than depth.sync_tolerance_s (0.05 s) from every colour frame (2 Hz) pairs with none."""
    sample = write_sample_bag(tmp_path / "in", SampleBagSpec(frames=4, rate_hz=2.0, depth_offset_s=offset_s))
    assert label(params_file, tiny_checkpoint, tmp_path / "out", sample.path) == 0
    outputs = read_outputs(tmp_path / "out" / "in_labels")
    segmentation = [deserialize_message(raw, Segmentation) for _, raw in outputs["/clipseg/segmentation"]]
    assert [s.has_depth for s in segmentation] == [paired] * 4
    if paired:  # every pixel of the tiny model's masks has depth: all of them are counted
        assert all(i.point_count > 0 for s in segmentation for i in s.instances)
    assert len(outputs.get("/clipseg/points", [])) == (4 if paired else 0)
    probability = image_to_numpy(deserialize_message(outputs["/clipseg/probability"][0][1], Image))
    assert probability.dtype == np.float32 and 0.0 <= probability.min() <= probability.max() <= 1.0


def test_any_backend_of_the_engine_labels(params_file, tiny_checkpoint, tmp_path, runtime_cache):
    """--backend onnxruntime: the engine's ONNX export (cached) runs the image path; the masks are torch's."""
    sample = write_sample_bag(tmp_path / "in", SampleBagSpec(frames=3))
    # test_backends' input size: the session's export of these weights serves both
    params = tmp_path / "segment.yaml"
    params.write_text(params_file.read_text().replace("input_size: [64, 64]", "input_size: [64, 96]"))
    masks = {}
    for backend in ("torch", "onnxruntime"):
        extra = ("--backend", backend, "--outputs", "mask,probability")
        assert label(params, tiny_checkpoint, tmp_path / backend, sample.path, extra=extra) == 0
        outputs = read_outputs(tmp_path / backend / "in_labels")
        masks[backend] = [image_to_numpy(deserialize_message(raw, Image)) for _, raw in outputs["/clipseg/mask"]]
        masks[backend + " probability"] = [
            image_to_numpy(deserialize_message(raw, Image)) for _, raw in outputs["/clipseg/probability"]
        ]
    for torch_mask, ort_mask in zip(masks["torch"], masks["onnxruntime"], strict=True):
        assert np.mean(torch_mask != ort_mask) < 0.01
    for a, b in zip(masks["torch probability"], masks["onnxruntime probability"], strict=True):
        assert np.abs(a - b).max() < 1e-3


def test_several_cameras_each_get_the_nodes_names(tiny_checkpoint, tmp_path):
    """`cameras: [front, left]`: each camera's frames from /<camera>/image (the node's names), its outputs under
    /clipseg/<camera>/, every frame of each at its own log time."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    parts = [
        write_sample_bag(tmp_path / name, SampleBagSpec(frames=frames, namespace=f"/{name}", seed=seed, depth=None))
        for name, frames, seed in (("front", 4, 0), ("left", 3, 1))
    ]
    merged = tmp_path / "both"
    with Writer(merged, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for part in parts:
            with AnyReader([part.path]) as reader:
                connections = {
                    c.id: writer.add_connection(c.topic, c.msgtype, typestore=typestore) for c in reader.connections
                }
                for connection, log_ns, raw in reader.messages():
                    writer.write(connections[connection.id], log_ns, raw)
    params = tmp_path / "cameras.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    device: cpu\n    input_size: [64, 64]\n    cameras: [front, left]\n"
    )
    args = [str(merged), "--params-file", str(params), "--weights", str(tiny_checkpoint), "--prompts", PROMPTS]
    assert main([*args, "--output", str(tmp_path / "out"), "--quiet", "--outputs", "mask,label"]) == 0
    outputs = read_outputs(tmp_path / "out" / "both_labels")
    assert set(outputs) == {f"/clipseg/{c}/{o}" for c in ("front", "left") for o in ("mask", "label")}
    for part in parts:
        camera = part.spec.namespace.strip("/")
        logged = colour_log_times(part.path, f"/{camera}/image")
        assert [log_ns for log_ns, _ in outputs[f"/clipseg/{camera}/mask"]] == logged
