"""The inference worker: one thread that takes the newest frame of every camera, segments them in one batch
and has each camera publish its outputs.

Frames reach it only through the mailbox, so a slow model never builds a backlog and no camera starves
another. `max_rate_hz` is read afresh on every pass (a change applies to the next frame); frames arriving
while it is waited out replace each other in the mailbox. A batch computed with prompts that were replaced
while it ran is discarded, never published after the new label set (the board's publish lock); a batch in
flight when the worker stops publishes nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from rclpy.impl.rcutils_logger import RcutilsLogger

from clipseg_ros.engine.segmenter import Segmenter
from clipseg_ros.ros.image_codec import ImageDecodeError
from clipseg_ros.ros.node.camera import Camera, Frame
from clipseg_ros.ros.node.diagnostics import WARN_EVERY_S
from clipseg_ros.ros.node.frame_mailbox import FrameMailbox
from clipseg_ros.ros.node.prompt_board import PromptBoard

TAKE_TIMEOUT_S = 0.1  # the longest the worker waits for frames or sleeps before looking at its state again


class Worker:
    def __init__(
        self,
        board: PromptBoard,
        segmenter: Segmenter,
        cameras: Mapping[str, Camera],
        logger: RcutilsLogger,
    ) -> None:
        self.mailbox = FrameMailbox()
        self._board, self._segmenter, self._cameras, self._logger = board, segmenter, cameras, logger
        self._running = True
        self._thread = threading.Thread(target=self._work, name="clipseg-inference")

    def start(self) -> None:
        self._thread.start()

    def stop(self, join_s: float) -> bool:
        """Stop taking frames; False when the batch in flight still runs after `join_s` (it publishes nothing)."""
        with self._board.publish_lock:
            self._running = False
        self.mailbox.close()
        self._thread.join(timeout=join_s)
        return not self._thread.is_alive()

    def _work(self) -> None:
        last_start: float | None = None
        while not self.mailbox.closed:
            rate = self._board.settings.max_rate_hz
            delay = last_start + 1.0 / rate - time.monotonic() if rate > 0 and last_start is not None else 0.0
            if delay > 0:
                time.sleep(min(delay, TAKE_TIMEOUT_S))
                continue
            batch = self.mailbox.take(timeout=TAKE_TIMEOUT_S)
            if not batch or self.mailbox.closed:
                continue
            last_start = time.monotonic()
            try:
                self._segment(batch)
            except Exception as exc:  # the worker must outlive any single frame
                if self._running:
                    self._logger.error(f"frame failed: {exc!r}", throttle_duration_sec=WARN_EVERY_S)

    def _segment(self, batch: dict[str, Frame]) -> None:
        prompt_set = self._board.prompt_set()
        settings = prompt_set.settings
        if not prompt_set.prompts:
            return  # paused
        frames, images = [], []
        for name, frame in batch.items():
            camera = self._cameras.get(name)
            if camera is None or not camera.listened:
                continue  # its listeners left while the frame waited
            try:
                images.append(frame.decode(settings.max_image_pixels))
            except ImageDecodeError as exc:
                camera.stats.frame_rejected()
                self._logger.warning(f"frame dropped: {exc}", throttle_duration_sec=WARN_EVERY_S)
                continue
            frames.append(frame)
        if not frames:
            return
        started = time.monotonic()
        results = self._segmenter.segment_batch(images, prompt_set.prompts, settings.threshold)
        inference_s = time.monotonic() - started
        for frame in frames:  # outside the publish lock: a prompt change is not held up by a late depth frame
            self._cameras[frame.camera].await_depth(frame.msg.header)
        with self._board.publish_lock:
            if not self._running or self._board.superseded(prompt_set, len(results)):
                return
            for frame, rgb, result in zip(frames, images, results, strict=True):
                camera = self._cameras[frame.camera]
                camera.publish(frame.msg.header, rgb, result, settings.outputs)
                camera.stats.frame_processed(inference_s, age_s=time.monotonic() - frame.received)
