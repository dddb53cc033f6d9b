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

from clipseg_ros.engine.checkpoints import DEFAULT_WEIGHTS, save_hf
from clipseg_ros.engine.model import ClipSeg, ClipSegConfig
from clipseg_ros.engine.overlay import with_caption
from clipseg_ros.ros.demo.console import say, shout
from clipseg_ros.ros.demo.demo_client import DemoClient
from clipseg_ros.ros.demo.photo_tour import PhotoTour
from clipseg_ros.ros.demo.pictures import draw_instances
from clipseg_ros.ros.demo.records import describe, instance_record
from clipseg_ros.ros.demo.sample_publisher import SYNTHETIC_DEPTH_NOTE
from clipseg_ros.ros.demo.shapes_tour import ShapesTour
from clipseg_ros.ros.node.startup import EXIT_WEIGHTS_UNAVAILABLE
from clipseg_ros.train.shapes_model import DESCRIPTION, ShapesModel, ShapesRecipe, shapes_model

RANDOM_BANNER = "RANDOM WEIGHTS: these masks mean nothing"
CAPTION_RANDOM = (200, 0, 0)
CAPTION_SYNTHETIC = (20, 60, 130)
CAPTION_DEPTH = (110, 40, 100)
LOAD_TIMEOUT_S = 600.0  # first run with hub weights downloads about 600 MB


def write_random_weights(directory: str | os.PathLike, seed: int = 0) -> Path:
    """An untrained CLIPSeg small enough to run anywhere, saved as a Hugging Face checkpoint."""
    torch.manual_seed(seed)
    return save_hf(ClipSeg(ClipSegConfig.tiny()).eval(), directory)


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
        node = self.spawn("node.segment_node", ["--ros-args", "--params-file", str(params), *overrides])
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

    def stop(self, process: subprocess.Popen) -> None:
        process.send_signal(2)  # SIGINT: what ros2 launch sends
        process.wait(timeout=10)
        self.processes.remove(process)

    def _stop_processes(self) -> None:
        for process in self.processes:
            process.send_signal(2)  # SIGINT: what ros2 launch sends
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def share_directory() -> Path:
    """share/clipseg_ros: from the ament index in a sourced ROS workspace, else the venv prefix (make setup)."""
    if os.environ.get("AMENT_PREFIX_PATH"):
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("clipseg_ros"))
    return Path(sys.prefix) / "share" / "clipseg_ros"


if __name__ == "__main__":
    sys.exit(main())
