"""The demo on new scenes of shapes (the small model trained here): prompts, a visual prompt, the node's masks
scored against the scenes' own shapes, then moving shapes whose track ids the node keeps (track_tour)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from clipseg_ros.engine.overlay import render_overlay
from clipseg_ros.msg import VisualPrompt
from clipseg_ros.ros.demo.console import say
from clipseg_ros.ros.demo.demo_client import DemoClient, showing, with_depth
from clipseg_ros.ros.demo.demo_host import DemoHost
from clipseg_ros.ros.demo.pictures import cut_out, label_image, side_by_side
from clipseg_ros.ros.demo.records import Z_TOLERANCE_M, depth_check
from clipseg_ros.ros.demo.sample_publisher import SYNTHETIC_DEPTH_NOTE, synthetic_depth
from clipseg_ros.ros.demo.track_tour import TrackTour
from clipseg_ros.ros.image_codec import image_to_numpy, image_to_rgb, numpy_to_image
from clipseg_ros.train.metrics import SegmentationMetrics
from clipseg_ros.train.shapes_model import DESCRIPTION
from clipseg_ros.train.synthetic import COLOURS, SHAPES, synthetic_scenes

# The camera's shape scenes: seeds other than the training scenes' (ShapesRecipe.seed), so never seen in training.
CAMERA_SCENES, CAMERA_SEED, SUPPORT_SEED, SCENE_SIZE = 4, 1, 2, 384


class ShapesTour:
    """New scenes of shapes: per scene its prompts over the topic, a visual prompt cut out of another scene
    through the service, and the node's masks scored against the scenes' own shapes.

    A scene's prompts are what it holds and one shape in a colour it lacks, which must come out empty. The
    model has learned colour, not shape (its scenes, as these, hold one shape per colour), so a prompt naming
    another shape of a colour in the scene would mark that shape too (see docs/demo.md); none is asked here.
    """

    def __init__(self, demo: DemoHost, client: DemoClient) -> None:
        self.demo, self.client = demo, client
        self.shapes = demo.shapes
        self.scenes = synthetic_scenes(CAMERA_SCENES, SCENE_SIZE, CAMERA_SEED)

    def run(self) -> int:
        camera = self.demo.spawn("demo.sample_publisher", [
            "--ros-args", "-p", "rate_hz:=2.0", "-p", f"synthetic_scenes:={CAMERA_SCENES}",
            "-p", f"synthetic_seed:={CAMERA_SEED}", "-p", f"synthetic_size:={SCENE_SIZE}", "-p", "depth:=true",
        ])  # fmt: skip
        written, perception = self._topic_phase()
        written += self._visual_prompt_phase()
        scores = self._score_node()
        strips, tracks = TrackTour(self.demo, self.client, camera).run()
        written += strips
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
            "tracks": tracks,
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
