"""Counters the node keeps, their /diagnostics message (DiagnosticArray), and how often bad input is logged."""

from __future__ import annotations

import threading
import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

WARN_EVERY_S = 2.0  # bad input is warned about at most this often per kind: a broken camera must not flood the log
WINDOW_S = 5.0  # rates and latency are over the last few seconds: what a dashboard wants, not a lifetime mean
STALE_INPUT_S = 5.0  # no frame for this long while prompts are set: WARN, the camera or QoS is likely wrong


class RateMeter:
    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        return len(self._times) / self._window_s

    def last(self) -> float | None:
        return self._times[-1] if self._times else None

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self._window_s:
            self._times.popleft()


class SegmentStats:
    """Thread-safe counters: callbacks, worker and service all report here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inputs = RateMeter()
        self._outputs = RateMeter()
        self._latencies: deque[tuple[float, float, float]] = deque(maxlen=100)  # (time, inference, age)
        self.rejected_frames = 0
        self.processed_frames = 0
        self.last_input_time: float | None = None

    def frame_received(self) -> None:
        with self._lock:
            now = time.monotonic()
            self._inputs.tick(now)
            self.last_input_time = now

    def frame_rejected(self) -> None:
        with self._lock:
            self.rejected_frames += 1

    def frame_processed(self, inference_s: float, age_s: float) -> None:
        """`age_s`: from the frame's arrival to its outputs being published (waiting included)."""
        with self._lock:
            now = time.monotonic()
            self._outputs.tick(now)
            self._latencies.append((now, inference_s, age_s))
            self.processed_frames += 1

    def status(
        self,
        *,
        name: str,
        hardware_id: str,
        model: str,
        dropped: int,
        cache: dict,
        prompts: int,
        paused: bool,
        listening: bool,
        extra: dict[str, str],
    ) -> DiagnosticStatus:
        """`listening`: subscribed to the camera (someone reads an output); `extra`: more values to show."""
        with self._lock:
            now = time.monotonic()
            recent = [(inference, age) for t, inference, age in self._latencies if now - t <= WINDOW_S]
            input_rate, output_rate = self._inputs.rate(now), self._outputs.rate(now)
            rejected, processed, last_input = self.rejected_frames, self.processed_frames, self.last_input_time
        lookups = cache.get("hits", 0) + cache.get("misses", 0)
        hit_rate = cache.get("hits", 0) / lookups if lookups else 0.0
        if paused:
            level, message = DiagnosticStatus.OK, "paused: no prompts (publish on ~/prompt or set `prompts`)"
        elif not listening:
            level, message = DiagnosticStatus.OK, "idle: no subscriber to any output, camera not subscribed"
        elif last_input is None or now - last_input > STALE_INPUT_S:
            level, message = DiagnosticStatus.WARN, "no camera frames: check the image topic and its QoS"
        else:
            level, message = DiagnosticStatus.OK, f"segmenting {prompts} prompt(s) at {output_rate:.1f} Hz"
        values = {
            "input_rate_hz": f"{input_rate:.2f}",
            "output_rate_hz": f"{output_rate:.2f}",
            "inference_ms_mean": _mean_ms([inference for inference, _ in recent]),
            "inference_ms_max": f"{1000 * max(inference for inference, _ in recent):.1f}" if recent else "nan",
            "latency_ms_mean": _mean_ms([age for _, age in recent]),  # arrival to publication
            "frames_processed": str(processed),
            "frames_dropped": str(dropped),
            "frames_rejected": str(rejected),
            "cache_hit_rate": f"{hit_rate:.3f}",
            "cache_size": str(cache.get("size", 0)),
            "prompts": str(prompts),
            "device": hardware_id,
            "model": model,
            **extra,
        }
        return DiagnosticStatus(
            level=level,
            name=name,
            message=message,
            hardware_id=hardware_id,
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )


def _mean_ms(seconds: list[float]) -> str:
    return f"{1000 * sum(seconds) / len(seconds):.1f}" if seconds else "nan"


def diagnostic_array(stamp, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = statuses
    return msg
