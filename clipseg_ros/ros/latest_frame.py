"""A one-item mailbox between subscription callbacks and the inference worker.

Callbacks only `put` (never wait on inference); a frame put while another waits replaces it, so the
worker always gets the newest frame, nothing queues up behind a slow model, and memory stays flat.
"""

from __future__ import annotations

import threading
from typing import Any


class LatestFrameSlot:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._item: Any = None
        self._closed = False
        self.dropped = 0  # frames replaced before the worker took them

    def put(self, item: Any) -> None:
        with self._condition:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._condition.notify()

    def take(self, timeout: float) -> Any:
        """The waiting item (removing it), or None after `timeout` seconds or once closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
