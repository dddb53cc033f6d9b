"""The mailbox between the node's callbacks and its inference worker: the newest frame of each camera.

Callbacks only `put` (they never wait on inference); a frame put while another of the same camera waits
replaces it, so the worker always gets each camera's newest frame, nothing queues up behind a slow
model, and memory stays flat. The worker takes every waiting camera's frame at once, so all of them go
through the model in one batch and no camera starves another.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class FrameMailbox:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._frames: dict[str, Any] = {}
        self._closed = False
        self.dropped: Counter[str] = Counter()  # per camera: frames replaced before the worker took them

    def put(self, camera: str, frame: Any) -> None:
        with self._condition:
            if camera in self._frames:
                self.dropped[camera] += 1
            self._frames[camera] = frame
            self._condition.notify()

    def take(self, timeout: float) -> dict[str, Any]:
        """Every waiting frame by camera, removed; empty after `timeout` seconds or once closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._frames or self._closed, timeout)
            frames, self._frames = self._frames, {}
            return frames

    def discard(self, camera: str) -> None:
        """Forget a camera's waiting frame (its outputs lost their last listener)."""
        with self._condition:
            self._frames.pop(camera, None)

    def close(self) -> None:
        """Wake the worker for good."""
        with self._condition:
            self._closed = True
            self._frames.clear()
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
