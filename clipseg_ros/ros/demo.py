"""`make demo`: the whole ROS graph on a sample camera, with the results written as overlay PNGs.

Starts the segment node and a sample camera as their own processes, sends prompts over the `/clipseg/prompt`
topic, a visual prompt and calls to the `/clipseg/segment` service, and writes what comes back to `out/demo/`.
The camera also publishes a SYNTHETIC depth (rendered from the scene, not measured) and the node pairs it with its
frames: `instances_*.png` show each instance's box, label and 3D centroid from `/clipseg/segmentation`, and
`summary.json` holds the instances with the `/clipseg/points` and `/clipseg/markers` counts, each centroid's z
next to the depth that was rendered there.

The model:
- `--weights` (default: the released CIDAS/clipseg-rd64-refined, downloaded once; or a local path): the camera
  shows scikit-image's photos;
- `--synthetic`: a small CLIPSeg trained here on synthetic shapes (under a minute on two cores, once: it is
  cached under `out/`); the camera shows new scenes of shapes, and the node's masks are scored against them.
  `--fallback-synthetic` (what `make demo` passes) switches to it only when the weights cannot be had (offline);
- `--random-weights`: a smoke run of the graph with an untrained tiny model, for tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import rclpy
import torch
from rclpy.executors import SingleThreadedExecutor

from clipseg_ros.checkpoints import DEFAULT_WEIGHTS, save_hf
from clipseg_ros.model import ClipSeg, ClipSegConfig
from clipseg_ros.msg import VisualPrompt
from clipseg_ros.overlay import draw_tag, label_colors, render_overlay, text_scale, with_caption
from clipseg_ros.ros.demo_client import DemoClient
from clipseg_ros.ros.image_codec import image_to_numpy, image_to_rgb, numpy_to_image
from clipseg_ros.ros.sample_publisher import (
    PHOTO_PLANE_M,
    SAMPLES,
    SYNTHETIC_DEPTH_NOTE,
    sample_image,
    synthetic_depth,
)
from clipseg_ros.ros.segment_node import EXIT_WEIGHTS_UNAVAILABLE
from clipseg_ros.train.metrics import SegmentationMetrics
from clipseg_ros.train.shapes_model import DESCRIPTION, ShapesModel, ShapesRecipe, shapes_model
from clipseg_ros.train.synthetic import COLOURS, SHAPES, synthetic_scenes

RANDOM_BANNER = "RANDOM WEIGHTS: these masks mean nothing"
CAPTION_RANDOM = (200, 0, 0)
CAPTION_SYNTHETIC = (20, 60, 130)
CAPTION_DEPTH = (110, 40, 100)
# An instance's 3D centroid z further than this from the depth rendered under its mask is reported as off.
Z_TOLERANCE_M = 0.05
TOPIC_PROMPTS = "a cup of coffee; a cat; a person"
SERVICE_PROMPTS = ["a rocket", "a flag", "a face"]
LOAD_TIMEOUT_S = 600.0  # first run with hub weights downloads about 600 MB
# The camera's shape scenes: seeds other than the training scenes' (ShapesRecipe.seed), so never seen in training.
CAMERA_SCENES, CAMERA_SEED, SUPPORT_SEED, SCENE_SIZE = 4, 1, 2, 384


def write_random_weights(directory: str | os.PathLike, seed: int = 0) -> Path:
    """An untrained CLIPSeg small enough to run anywhere, saved as a Hugging Face checkpoint."""
    torch.manual_seed(seed)
    return save_hf(ClipSeg(ClipSegConfig.tiny()).eval(), directory)


def shout(lines: list[str]) -> None:
    bar = "!" * 78
    print("\n".join([bar, *(f"!!  {line}" for line in lines), bar]), file=sys.stderr, flush=True)


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipseg_ros.ros.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help="hub id or local path (default: %(default)s)")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--synthetic", action="store_true", help="a small model trained here on synthetic shapes")
    model.add_argument("--random-weights", action="store_true", help="smoke run: untrained tiny model")
    parser.add_argument(
        "--fallback-synthetic",
        action="store_true",
        help="when the weights cannot be loaded, say so and continue as with --synthetic",
    )
    parser.add_argument(
        "--train-steps", type=int, default=ShapesRecipe.steps, help="training steps of --synthetic (%(default)s)"
    )
    parser.add_argument(
        "--cache", default="out/shapes_model", type=Path, help="where --synthetic's model is kept (%(default)s)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda:N (default: %(default)s)")
    parser.add_argument("--out", default="out/demo", type=Path, help="where the PNGs go (default: %(default)s)")
    args = parser.parse_args(argv)

    # A self-contained graph: stay on this machine, on a domain of our own unless the user chose one.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    # As the launch file does: shared memory large enough for the camera frames and probability maps.
    profile = share_directory() / "config" / "fastdds_large_frames.xml"
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    say(
        f"graph on ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
        f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']} "
        f"FASTDDS_DEFAULT_PROFILES_FILE={os.environ['FASTDDS_DEFAULT_PROFILES_FILE']}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clipseg_demo_") as tmp:
        return DemoRun(args, Path(tmp)).run()


class DemoRun:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.random = args.random_weights
        self.shapes: ShapesModel | None = None
        self.processes: list[subprocess.Popen] = []

    def run(self) -> int:
        if self.args.synthetic:  # before any ROS thread: training has the process to itself
            self.shapes = self._shapes_model()
        rclpy.init()
        executor = SingleThreadedExecutor()
        client = spinner = None
        try:
            client = DemoClient()
            executor.add_node(client)
            spinner = threading.Thread(target=executor.spin, daemon=True)
            spinner.start()
            code = self._start_node(client)
            if code == EXIT_WEIGHTS_UNAVAILABLE and self.args.fallback_synthetic and not self.shapes:
                shout([f"weights {self.args.weights!r} could not be loaded (reason above).",
                       "Continuing with a small model trained here on synthetic shapes (--synthetic)."])
                self.shapes = self._shapes_model()
                code = self._start_node(client)
            if code == EXIT_WEIGHTS_UNAVAILABLE:
                print(
                    "demo: no weights. Pass a local checkpoint with --weights PATH "
                    "(make demo DEMO_ARGS='--weights PATH'), train a small model on synthetic shapes with "
                    "--synthetic, or run the graph untrained with --random-weights.",
                    file=sys.stderr,
                )
                return code
            if code is not None:
                print(f"demo: the segment node exited with code {code}", file=sys.stderr)
                return code
            tour = ShapesTour(self, client) if self.shapes else PhotoTour(self, client)
            return tour.run()
        finally:
            self._stop_processes()
            # The spinning thread leaves rclpy before the context goes: shutting down under it aborted the process
            # at exit now and then ("terminate called without an active exception").
            executor.shutdown()
            if spinner is not None:
                spinner.join()
            if client is not None:
                client.destroy_node()
            rclpy.try_shutdown()

    def _shapes_model(self) -> ShapesModel:
        recipe = replace(ShapesRecipe(), steps=self.args.train_steps)
        say(f"model: {DESCRIPTION}")
        say(f"(cached in {self.args.cache}; trained on the first run: {recipe.steps} steps, under a minute on 2 cores)")
        start = time.monotonic()
        model = shapes_model(self.args.cache, recipe, device=self.args.device)
        took = f"trained in {time.monotonic() - start:.0f} s" if model.trained_now else "loaded from the cache"
        say(f"{model.directory}: {took}")
        say(model.summary())
        return model

    def spawn(self, module: str, ros_args: list[str]) -> subprocess.Popen:
        # -P: never import a source checkout in the working directory over the installed package (with msg/srv).
        process = subprocess.Popen([sys.executable, "-P", "-m", f"clipseg_ros.ros.{module}", *ros_args])
        self.processes.append(process)
        return process

    def _start_node(self, client: DemoClient) -> int | None:
        """None once the node serves, else its exit code."""
        if self.random:
            shout([RANDOM_BANNER, "Smoke run of the whole graph with an untrained tiny model."])
            weights = str(write_random_weights(self.tmp / "random_weights"))
        else:
            weights = str(self.shapes.directory) if self.shapes else self.args.weights
        params = share_directory() / "config" / "segment.yaml"
        overrides = ["-p", f"weights:={weights}", "-p", f"device:={self.args.device}", "-p", "depth.enabled:=true"]
        if self.shapes:  # the size it was trained at (a shape covers as many patches), the threshold it was scored at
            side = self.shapes.input_size
            overrides += ["-p", f"input_size:=[{side}, {side}]", "-p", f"threshold:={self.shapes.threshold}"]
        node = self.spawn("segment_node", ["--ros-args", "--params-file", str(params), *overrides])
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while time.monotonic() < deadline:
            if node.poll() is not None:
                self.processes.remove(node)
                return node.returncode
            if client.segment.wait_for_service(timeout_sec=0.5):
                return None
        raise TimeoutError(f"the segment node did not come up within {LOAD_TIMEOUT_S:.0f} s")

    def write(self, name: str, rgb: np.ndarray) -> Path:
        # On the picture itself: a PNG travels without its log.
        if self.random:
            rgb = with_caption(rgb, [RANDOM_BANNER], CAPTION_RANDOM)
        elif self.shapes:
            rgb = with_caption(rgb, [DESCRIPTION], CAPTION_SYNTHETIC)
        path = self.args.out / name
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return path

    def perception(
        self, client: DemoClient, name: str, segmentation, frame: np.ndarray, rendered_mm: np.ndarray
    ) -> tuple[Path, dict]:
        """`instances_<name>.png` and the summary's record of one frame's /clipseg/segmentation, with the
        /clipseg/points and /clipseg/markers of the same frame; each instance's z against the rendered depth."""
        cloud = client.stamped("points", segmentation.header.stamp)
        markers = client.stamped("markers", segmentation.header.stamp)
        record = {
            "frame": name,
            "labels": list(segmentation.labels),
            "has_depth": segmentation.has_depth,
            "points": cloud.width if cloud is not None else 0,
            "markers": sum(m.action != m.DELETEALL for m in markers.markers) if markers is not None else 0,
            "instances": [instance_record(i, rendered_mm) for i in segmentation.instances],
        }
        say(
            f"{name}: /clipseg/segmentation has_depth={record['has_depth']}, {len(record['instances'])} instances; "
            f"/clipseg/points {record['points']} points; /clipseg/markers {record['markers']} markers"
        )
        for instance in record["instances"]:
            say("  " + describe(instance))
        notes = [
            SYNTHETIC_DEPTH_NOTE,
            f"/clipseg/points: {record['points']} points, /clipseg/markers: {record['markers']} markers; "
            "per instance: pixel box, label, 3D centroid x, y, z (m, camera optical frame)",
        ]
        image = with_caption(draw_instances(frame, segmentation), notes, CAPTION_DEPTH)
        return self.write(f"instances_{name}.png", image), record

    def summary(self, client: DemoClient, written: list[Path]) -> None:
        say("wrote " + ", ".join(str(p) for p in written))
        if client.diagnostics:
            say("node diagnostics " + json.dumps(client.diagnostics))
        if self.random:
            shout([RANDOM_BANNER, "The graph ran end to end; for real masks pass --weights."])
        if self.shapes:
            say(f"model: {DESCRIPTION}")

    def _stop_processes(self) -> None:
        for process in self.processes:
            process.send_signal(2)  # SIGINT: what ros2 launch sends
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


class PhotoTour:
    """scikit-image's photos: prompts over the topic, then the service on a photo and on the latest frame."""

    def __init__(self, demo: DemoRun, client: DemoClient) -> None:
        self.demo, self.client = demo, client

    def run(self) -> int:
        self.demo.spawn("sample_publisher", ["--ros-args", "-p", "rate_hz:=2.0", "-p", "depth:=true"])
        topic, service = self._topic_phase(), self._service_phase()
        self.demo.summary(self.client, topic + service)
        overlays = sum(p.name.startswith("topic_") for p in topic)
        if len(topic) < 2 * len(SAMPLES) or len(service) < 2:
            print(
                f"demo: FAILED, some outputs never came: {overlays}/{len(SAMPLES)} topic overlays, "
                f"{len(topic) - overlays}/{len(SAMPLES)} instance images, "
                f"{len(service)}/2 service results (see the log above)",
                file=sys.stderr,
            )
            return 1
        return 0

    def _topic_phase(self) -> list[Path]:
        sizes = {sample_image(name).shape[:2]: name for name in SAMPLES}
        labels = self.client.send_prompt(TOPIC_PROMPTS)
        say(f"prompts over /clipseg/prompt -> label_info {labels}")
        overlays = self.client.collect("overlay", lambda msg, _: sizes.get((msg.height, msg.width)), len(sizes), 120.0)
        written = [self.demo.write(f"topic_{name}.png", image_to_rgb(msg)) for name, (msg, _) in overlays.items()]

        def photo_with_its_frame(msg, frame) -> str | None:
            # Only once its camera frame is here too: the 3D picture is drawn on it.
            if frame is None or msg.labels != labels:
                return None
            return sizes.get((msg.masks[0].height, msg.masks[0].width))

        segmentations = self.client.collect("segmentation", with_depth(photo_with_its_frame), len(sizes), 60.0)
        records = []
        for name, (msg, frame) in segmentations.items():
            plane = synthetic_depth([], frame.shape[:2], PHOTO_PLANE_M)
            path, record = self.demo.perception(self.client, name, msg, frame, plane)
            written.append(path)
            records.append(record)
        summary = {"synthetic_depth": SYNTHETIC_DEPTH_NOTE, "perception": records}
        (self.demo.args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return written

    def _service_phase(self) -> list[Path]:
        written = []
        image = sample_image("astronaut")
        response = self.client.call_segment(image, SERVICE_PROMPTS)
        say(f"/clipseg/segment on astronaut: {response.message}")
        if response.success:
            overlay = render_overlay(image, label_image(response), list(response.labels))
            written.append(self.demo.write("service_astronaut.png", overlay))
        self.client.wait_for_frames(2)
        response = self.client.call_segment(None, ["a cat"])  # no image: the node's latest camera frame
        say(f"/clipseg/segment on the latest frame: {response.message}")
        frame = self.client.frame_at(response.header.stamp) if response.success else None
        if frame is not None:
            overlay = render_overlay(frame, label_image(response), list(response.labels))
            written.append(self.demo.write("service_latest_frame.png", overlay))
        return written


class ShapesTour:
    """New scenes of shapes: per scene its prompts over the topic, a visual prompt cut out of another scene
    through the service, and the node's masks scored against the scenes' own shapes.

    A scene's prompts are what it holds and one shape in a colour it lacks, which must come out empty. The
    model has learned colour, not shape (its scenes, as these, hold one shape per colour), so a prompt naming
    another shape of a colour in the scene would mark that shape too (see the README); none is asked here.
    """

    def __init__(self, demo: DemoRun, client: DemoClient) -> None:
        self.demo, self.client = demo, client
        self.shapes = demo.shapes
        self.scenes = synthetic_scenes(CAMERA_SCENES, SCENE_SIZE, CAMERA_SEED)

    def run(self) -> int:
        self.demo.spawn("sample_publisher", [
            "--ros-args", "-p", "rate_hz:=2.0", "-p", f"synthetic_scenes:={CAMERA_SCENES}",
            "-p", f"synthetic_seed:={CAMERA_SEED}", "-p", f"synthetic_size:={SCENE_SIZE}", "-p", "depth:=true",
        ])  # fmt: skip
        written, perception = self._topic_phase()
        written += self._visual_prompt_phase()
        scores = self._score_node()
        curves = self.demo.args.out / "eval_curves.png"
        shutil.copyfile(self.shapes.curves, curves)
        written.append(curves)
        summary = {
            "model": DESCRIPTION,
            "weights": str(self.shapes.directory),
            "held_out": {"text": self.shapes.report["metrics"], "visual": self.shapes.report["one_shot"]},
            "node_on_unseen_scenes": scores,
            "synthetic_depth": SYNTHETIC_DEPTH_NOTE,
            "perception": perception,
            "depth_check": depth_check(perception),
        }
        (self.demo.args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        say(self.shapes.summary())
        say(
            f"the node's masks on {scores['scenes']} unseen camera scenes (each scene's shapes and one absent): "
            f"IoU_FG {scores['IoU_FG']:.2f} mIoU {scores['mIoU']:.2f} at threshold {scores['threshold']}"
        )
        check = summary["depth_check"]
        say(
            f"3D against the synthetic depth: {check['instances_3d']} instances with 3D, their centroid z within "
            f"{check['max_z_error_m']:.3f} m of the depth rendered under them ({check['off']} off by more than "
            f"{Z_TOLERANCE_M} m)"
        )
        self.demo.summary(self.client, written)
        expected = 2 * CAMERA_SCENES + 2
        if len(written) < expected:
            print(f"demo: FAILED, some outputs never came: wrote {len(written)} of {expected} files "
                  "(see the log above)", file=sys.stderr)
            return 1
        return 0

    def prompts(self, scene: int) -> list[str]:
        shapes = self.scenes[scene][1]
        colours = {phrase.split()[0] for phrase, _ in shapes}
        absent = next(colour for colour in COLOURS if colour not in colours)
        return [*(phrase for phrase, _ in shapes), f"{absent} {SHAPES[scene % len(SHAPES)]}"]

    def _topic_phase(self) -> tuple[list[Path], list[dict]]:
        """Per scene: the overlay, and the instances with 3D from /clipseg/segmentation (with points, markers)."""
        written, records = [], []
        for k, (image, shapes) in enumerate(self.scenes):
            labels = self.client.send_prompt("; ".join(self.prompts(k)))
            say(f"scene {k + 1}: prompts over /clipseg/prompt -> label_info {labels}")
            overlays = self.client.collect("overlay", showing(image), 1, 60.0)
            written += [self.demo.write(f"topic_scene{k + 1}.png", image_to_rgb(msg)) for msg, _ in overlays.values()]
            segmentations = self.client.collect("segmentation", with_depth(showing(image, labels)), 1, 30.0)
            for msg, frame in segmentations.values():
                rendered = synthetic_depth([mask for _, mask in shapes], image.shape[:2])
                path, record = self.demo.perception(self.client, f"scene{k + 1}", msg, frame, rendered)
                written.append(path)
                records.append(record)
        return written, records

    def _visual_prompt_phase(self) -> list[Path]:
        """A shape cut out of a scene the camera never shows, as the visual prompt on a scene that has one."""
        support, support_shapes = synthetic_scenes(1, SCENE_SIZE, SUPPORT_SEED)[0]
        scene_with: dict[str, int] = {}
        for k, (_, shapes) in enumerate(self.scenes):
            for phrase, _ in shapes:
                scene_with.setdefault(phrase, k)
        phrase, mask = next(((p, m) for p, m in support_shapes if p in scene_with), support_shapes[0])
        target = self.scenes[scene_with.get(phrase, 0)][0]
        prompt = VisualPrompt(
            image=numpy_to_image(support, "rgb8"),
            mask=numpy_to_image(mask.astype(np.uint8) * 255, "mono8"),
            label=f"shown: {phrase}",
        )
        response = self.client.call_segment(target, [], [prompt])
        say(f"/clipseg/segment with a visual prompt ({phrase} cut out of another scene): {response.message}")
        if not response.success:
            return []
        overlay = render_overlay(target, label_image(response), list(response.labels))
        return [self.demo.write("service_visual_prompt.png", side_by_side(cut_out(support, mask), overlay))]

    def _score_node(self) -> dict:
        """The node's masks for each scene's prompts against the scene's own shapes (none for the absent one)."""
        metrics = SegmentationMetrics()
        for k, (image, shapes) in enumerate(self.scenes):
            truth = dict(shapes)
            response = self.client.call_segment(image, self.prompts(k))
            if not response.success:
                raise RuntimeError(f"/clipseg/segment failed on a camera scene: {response.message}")
            for phrase, mask in zip(response.labels, response.masks, strict=True):
                target = truth.get(phrase, np.zeros(image.shape[:2], bool))
                metrics.add(image_to_numpy(mask) / 255.0, target, f"{k} {phrase}")
        headline = metrics.at(0.5)  # masks are 0 or 1: any threshold in (0, 1) takes them as they are
        return {"scenes": len(self.scenes), "threshold": self.shapes.threshold,
                "IoU_FG": headline["IoU_FG"], "mIoU": headline["mIoU"]}


def showing(image: np.ndarray, labels: list[str] | None = None):
    """A `DemoClient.collect` key that takes the outputs of frames showing `image` (and, given, of these labels)."""

    def key(msg, frame: np.ndarray | None) -> str | None:
        if labels is not None and list(msg.labels) != labels:
            return None
        return "it" if frame is not None and np.array_equal(frame, image) else None

    return key


def with_depth(key):
    """`key`, for segmentations paired with their depth frame only. Under load the node may segment a frame before
    its depth frame has arrived: that one is published without 3D, and the camera's next one is taken."""
    return lambda msg, frame: key(msg, frame) if msg.has_depth else None


def instance_record(instance, rendered_mm: np.ndarray) -> dict:
    """An Instance message as the summary holds it, with the median synthetic depth rendered under its mask."""
    box = instance.bbox
    mask = image_to_numpy(instance.mask) > 0
    under = rendered_mm[box.y_offset : box.y_offset + box.height, box.x_offset : box.x_offset + box.width][mask]
    record = {
        "label": instance.label,
        "score_max": round(float(instance.score_max), 3),
        "bbox_px": [box.x_offset, box.y_offset, box.width, box.height],
        "area_px": instance.area,
        "has_3d": instance.has_3d,
        "rendered_depth_m": round(float(np.median(under)) / 1000, 3) if under.size else None,
    }
    if instance.has_3d:
        c, size = instance.centroid_3d, instance.box_size
        record |= {
            "centroid_3d_m": [round(c.x, 3), round(c.y, 3), round(c.z, 3)],
            "box_size_m": [round(size.x, 3), round(size.y, 3), round(size.z, 3)],
            "point_count": instance.point_count,
        }
    return record


def describe(record: dict) -> str:
    head = f"{record['label']} (score {record['score_max']:.2f}, {record['area_px']} px)"
    if not record["has_3d"]:
        return f"{head}: no 3D"
    x, y, z = record["centroid_3d_m"]
    w, h, d = record["box_size_m"]
    return (
        f"{head}: centroid ({x:.3f}, {y:.3f}, {z:.3f}) m, box {w:.2f} x {h:.2f} x {d:.2f} m, "
        f"{record['point_count']} points; synthetic depth rendered there {record['rendered_depth_m']:.3f} m"
    )


def depth_check(perception: list[dict]) -> dict:
    """How far the instances' centroid z lie from the synthetic depth rendered under their masks."""
    errors = [
        abs(i["centroid_3d_m"][2] - i["rendered_depth_m"]) for r in perception for i in r["instances"] if i["has_3d"]
    ]
    return {
        "instances_3d": len(errors),
        "max_z_error_m": round(max(errors, default=0.0), 4),
        "off": sum(e > Z_TOLERANCE_M for e in errors),
    }


def draw_instances(rgb: np.ndarray, segmentation) -> np.ndarray:
    """The frame with each instance's pixel box in its label's colour, and on the instance's pixel centroid (on
    the object itself: tags there do not collide, boxes can) its label over its 3D centroid."""
    out = rgb.copy()
    colours = label_colors(len(segmentation.labels))
    thickness = max(1, round(text_scale(out) * 3))
    for instance in segmentation.instances:
        box, colour = instance.bbox, colours[instance.label_index]
        x0, y0 = box.x_offset, box.y_offset
        cv2.rectangle(out, (x0, y0), (x0 + box.width - 1, y0 + box.height - 1), colour.tolist(), thickness)
    line = 26 * text_scale(out)
    placed: list[tuple[float, float]] = []
    for instance in sorted(segmentation.instances, key=lambda i: -i.score_max):
        colour, cx, cy = colours[instance.label_index], instance.centroid_x, instance.centroid_y
        # Two instances on one object (a prompt marking another prompt's shape): the weaker one's tags below.
        while any(abs(cy - y) < 2 * line and abs(cx - x) < 8 * line for x, y in placed):
            cy += 2 * line
        placed.append((cx, cy))
        draw_tag(out, f"{instance.label} {instance.score_max:.2f}", colour, (cx, cy - line / 2))
        c = instance.centroid_3d
        where = f"({c.x:.2f}, {c.y:.2f}, {c.z:.2f}) m" if instance.has_3d else "no 3D"
        draw_tag(out, where, colour, (cx, cy + line / 2))
    return out


def cut_out(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The support as a person reads it: the shape in its colours, the rest of the scene dimmed."""
    dimmed = (rgb * 0.25).astype(np.uint8)
    return np.where(mask[..., None] > 0, rgb, dimmed)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two images of one height with a title over each: what was shown, what the node found."""
    scale = text_scale(left)
    band = round(34 * scale)
    panels = []
    for image, title in ((left, "visual prompt (from another scene)"), (right, "what the node found")):
        top = np.full((band, image.shape[1], 3), 24, np.uint8)
        cv2.putText(top, title, (6, band - round(10 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    max(1, round(scale * 2)), cv2.LINE_AA)
        panels.append(np.concatenate([top, image], axis=0))
    gap = np.full((panels[0].shape[0], 8, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1]], axis=1)


def share_directory() -> Path:
    """share/clipseg_ros: from the ament index in a sourced ROS workspace, else the venv prefix (make setup)."""
    if os.environ.get("AMENT_PREFIX_PATH"):
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("clipseg_ros"))
    return Path(sys.prefix) / "share" / "clipseg_ros"


def label_image(response) -> np.ndarray:
    """0 background, k = prompt k where it is the likeliest above the mask threshold (as ~/label)."""
    probabilities = np.stack([image_to_numpy(p) for p in response.probabilities])
    masks = np.stack([image_to_numpy(m) > 0 for m in response.masks])
    return np.where(masks.any(axis=0), probabilities.argmax(axis=0) + 1, 0).astype(np.uint8)


if __name__ == "__main__":
    sys.exit(main())
