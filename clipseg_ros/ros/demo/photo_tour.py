"""The demo on scikit-image's photos (real CLIPSeg weights): prompts over the topic, the service on a photo and
on the camera's latest frame."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from clipseg_ros.engine.overlay import render_overlay
from clipseg_ros.ros.demo.console import say
from clipseg_ros.ros.demo.demo_client import DemoClient, with_depth
from clipseg_ros.ros.demo.demo_host import DemoHost
from clipseg_ros.ros.demo.pictures import label_image
from clipseg_ros.ros.demo.sample_publisher import (
    PHOTO_PLANE_M,
    SAMPLES,
    SYNTHETIC_DEPTH_NOTE,
    sample_image,
    synthetic_depth,
)
from clipseg_ros.ros.image_codec import image_to_rgb

TOPIC_PROMPTS = "a cup of coffee; a cat; a person"
SERVICE_PROMPTS = ["a rocket", "a flag", "a face"]


class PhotoTour:
    """scikit-image's photos: prompts over the topic, then the service on a photo and on the latest frame."""

    def __init__(self, demo: DemoHost, client: DemoClient) -> None:
        self.demo, self.client = demo, client

    def run(self) -> int:
        self.demo.spawn("demo.sample_publisher", ["--ros-args", "-p", "rate_hz:=2.0", "-p", "depth:=true"])
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
