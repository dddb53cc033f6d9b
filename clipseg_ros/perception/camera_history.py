"""What one camera remembers between frames: its steady masks and its tracks, used in one order.

Per frame: the probability maps are steadied (`TemporalFilter`, off by default; exclusion prompts too, so a hand
is excluded as steadily as a cup is found), the exclusions are applied (`published_maps`), the instances are found
on what is left (by the caller, `perceive`), and the tracker gives them their ids (`Tracker`). The node keeps one
history per camera, all drawing track ids from one counter, so that an id is never given twice in its life.

The last tracked frame is kept: a service call on that same frame (same stamp) gets the ids of its tracks for
the instances it finds (`tracks_for`), matched by prompt and mask overlap, since the call segments the frame again
(its own prompts, threshold or depth may differ). Any other call's instances are untracked (id 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from clipseg_ros.engine.frame_maps import FrameMaps, published_maps
from clipseg_ros.perception.instances import Instance
from clipseg_ros.perception.temporal_filter import TemporalFilter, TemporalSettings
from clipseg_ros.perception.tracking import TrackedInstance, Tracker, TrackingSettings

# A service call's instance is a tracked one of the same frame when their masks overlap this much (IoU): the
# same frame segmented again with the same prompt gives (nearly) the same mask.
SAME_INSTANCE_IOU = 0.5


def untracked(instances: Iterable[Instance]) -> tuple[TrackedInstance, ...]:
    """Instances with no track (id 0): a service call's on an image of its own, or tracking off."""
    return tuple(TrackedInstance(i, 0, 0, 0.0, None, ()) for i in instances)


class CameraHistory:
    """Not thread-safe: the node calls it from its worker and, for prompt changes, under its publish lock."""

    def __init__(self, tracking: TrackingSettings, temporal: TemporalSettings, ids: Iterator[int]) -> None:
        self._tracker = Tracker(tracking, ids)
        self._filter = TemporalFilter(temporal)
        self._last: tuple[float, tuple[TrackedInstance, ...]] | None = None  # stamp, tracks of the last frame

    def configure(self, tracking: TrackingSettings, temporal: TemporalSettings) -> None:
        """Settings from this frame on: tracking off ends every track; steady masks turned on start afresh."""
        if tracking != self._tracker.settings:
            self._tracker.configure(tracking)
        if temporal.enabled and not self._filter.settings.enabled:
            self._filter.reset()  # its averages are of frames from before it was turned off
        self._filter.settings = temporal

    @property
    def tracking(self) -> bool:
        return self._tracker.settings.enabled

    def reset(self) -> None:
        """Forget every track and average (deactivate, cleanup); track ids go on from where they were."""
        self._tracker.reset()
        self._filter.reset()
        self._last = None

    def end_prompts(self, labels: Iterable[str]) -> None:
        """A prompt changed under the same label (a visual prompt replaced): its tracks and average end."""
        labels = list(labels)
        self._tracker.end_prompts(labels)
        self._filter.end_prompts(labels)
        self._last = None

    def maps(self, stamp_s: float, labels: Sequence[str], probabilities: np.ndarray, threshold: float) -> FrameMaps:
        """This frame's published maps from the segmenter's, steadied when steady masks are on."""
        if self._filter.settings.enabled:
            probabilities, masks = self._filter.filter(stamp_s, labels, probabilities)
        else:
            masks = probabilities >= threshold
        return published_maps(labels, probabilities, masks, threshold)

    def track(
        self, stamp_s: float, labels: Sequence[str], instances: Sequence[Instance]
    ) -> tuple[TrackedInstance, ...]:
        """This frame's instances with their track ids (all 0 with tracking off)."""
        tracked = self._tracker.update(stamp_s, labels, instances)
        self._last = (stamp_s, tracked) if self.tracking else None
        return tracked

    def tracks_for(self, stamp_s: float, instances: Sequence[Instance]) -> tuple[TrackedInstance, ...]:
        """A service call's instances of the frame stamped `stamp_s`: with the ids of that frame's tracks when it
        is the last frame tracked, else untracked."""
        if self._last is None or self._last[0] != stamp_s:
            return untracked(instances)
        tracked = self._last[1]
        answer = []
        for instance in instances:
            same = [t for t in tracked if t.track_id and t.instance.label == instance.label]
            overlaps = [_iou(instance, t.instance) for t in same]
            best = int(np.argmax(overlaps)) if overlaps else -1
            if best < 0 or overlaps[best] < SAME_INSTANCE_IOU:
                answer.append(untracked([instance])[0])
                continue
            t = same[best]
            velocity = t.velocity if instance.box3d is not None else None
            answer.append(TrackedInstance(instance, t.track_id, t.age_frames, t.age_s, velocity, t.trail))
        return tuple(answer)


def _iou(a: Instance, b: Instance) -> float:
    """Mask IoU of two instances of one image (masks cropped to their boxes)."""
    ax, ay, aw, ah = a.bbox
    bx, by, bw, bh = b.bbox
    left, top = max(ax, bx), max(ay, by)
    right, bottom = min(ax + aw, bx + bw), min(ay + ah, by + bh)
    if right <= left or bottom <= top:
        return 0.0
    inside = np.count_nonzero(
        a.mask[top - ay : bottom - ay, left - ax : right - ax] & b.mask[top - by : bottom - by, left - bx : right - bx]
    )
    return inside / (a.area + b.area - inside)
