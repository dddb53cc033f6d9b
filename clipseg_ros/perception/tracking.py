"""Objects over time: each prompt's instances keep an id from frame to frame, with their age and 3D velocity.

One `Tracker` per camera. Per prompt, this frame's instances are matched to the prompt's live tracks in one optimal
assignment (scipy's `linear_sum_assignment`) on a cost of mask overlap and, where both sides have 3D, distance in
metres. Not a tracking library: those (ByteTrack, SORT, norfair) match boxes through a Kalman filter in pixels,
while here the evidence is the masks themselves (two cups side by side have overlapping boxes, not overlapping
masks) and positions in metres with a physical gate, timed by the frames' stamps; `bench/tracking.py` scores the
two on the same sequences.

Rules:
- an instance matched to no track starts a new one, with an id never given before in this tracker's life (nor by
  any tracker sharing its id source: the node shares one between its cameras);
- a track is reported (a non-zero id) from its `min_hits`-th frame on; until then a frame without it ends it;
- a reported track that misses more than `max_missed_frames` consecutive frames ends;
- a prompt missing from a frame's labels, or named in `end_prompts`, ends its tracks; `reset` ends all, and so
  does a stamp earlier than the last one (a replayed recording);
- a frame stamped the same as the last one is that camera frame again (republished, or sent twice): its instances
  are matched and refresh their tracks, but it counts as no new frame: no hit, no miss, no age;
- velocity is measured between the 3D positions of matched frames over the time between their header stamps
  (not where the mask's area changed by more than STEADY_AREA: partly hidden, its centre moves), smoothed, in
  m/s in the camera's optical frame; it is None for an instance without 3D and until a
  track has two 3D positions;
- reported tracks are matched first, new ones to the instances left (a part split off an object for a frame does
  not take the object from its track);
- instances with at least half their masks inside the same track's predicted mask (and within its gate, with 3D)
  are parts of one object (a detection split in two): matched as one, they get one id;
- an instance with 3D matches a track with 3D only within `gate_m` of the track's predicted position (depth
  counting double, and the gate widening to twice `gate_m` over `max_missed_frames` unseen frames); otherwise
  (either side without 3D) only when its mask overlaps the track's predicted mask by at least `min_iou`.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from clipseg_ros.engine import limits
from clipseg_ros.perception.instances import Box3D, Instance

# Pixel centroids a track keeps for the overlay's trail.
TRAIL_POINTS = 20
# Instances with at least this share of their masks inside one track's predicted mask are parts of its object (a
# detection split in two, an object cut by something in front of it): matched as one, reported under one id.
PART_COVERED = 0.5
# A match whose mask area changed by more than this ratio is not a measure of its velocity: its mask's centre moved
# because part of it was hidden or shown (by an occluder, the view's edge, a split), not only because it moved.
STEADY_AREA = 0.7
# Depth counts double in the 3D distance: a mask cut by something in front of it, by the view's edge or by a split
# moves its centre sideways, while its depth (the median under it) stays that of the object.
_AXIS_WEIGHTS = np.array((1.0, 1.0, 2.0))
# Cost of a pair the gates refuse: far above any allowed pair (at most 2), so the assignment avoids it if it can.
_REFUSED = 1e6

Vector = tuple[float, float, float]


@dataclass(frozen=True)
class TrackingSettings:
    enabled: bool = True
    max_missed_frames: int = limits.DEFAULT_TRACK_MAX_MISSED  # then a track ends
    min_hits: int = limits.DEFAULT_TRACK_MIN_HITS  # frames before a track is reported
    gate_m: float = limits.DEFAULT_TRACK_GATE_M  # 3D distance from the predicted position, metres
    min_iou: float = limits.DEFAULT_TRACK_MIN_IOU  # mask overlap with the predicted mask, without 3D
    velocity_smoothing: float = limits.DEFAULT_VELOCITY_SMOOTHING  # weight of the newest velocity measurement

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled must be true or false, got {self.enabled!r}")
        limits.check_count("max_missed_frames", self.max_missed_frames, 0, limits.TRACK_MAX_MISSED_LIMIT)
        limits.check_count("min_hits", self.min_hits, 1, limits.TRACK_MIN_HITS_LIMIT)
        limits.check_positive_number("gate_m", self.gate_m, limits.TRACK_GATE_MAX_M)
        limits.check_fraction("min_iou", self.min_iou)
        limits.check_fraction("velocity_smoothing", self.velocity_smoothing)


@dataclass(frozen=True, eq=False)
class TrackedInstance:
    instance: Instance
    track_id: int  # 0: not a reported track (seen in fewer than min_hits frames, or tracking off)
    age_frames: int  # frames of this camera since the track was first seen (0 on that frame)
    age_s: float  # seconds between the stamps of that frame and this one
    velocity: Vector | None  # m/s, camera optical frame; None without 3D or before a second 3D position
    trail: tuple[tuple[float, float], ...]  # pixel centroids of its last matched frames, oldest first


class _Track:
    __slots__ = (
        "id", "first_frame", "first_stamp", "hits", "missed", "stamp", "bbox", "mask", "area", "centroid",
        "pixel_velocity", "position", "position_stamp", "velocity", "trail",
    )  # fmt: skip

    def __init__(self, track_id: int, frame: int, stamp: float, instance: Instance):
        self.id, self.first_frame, self.first_stamp = track_id, frame, stamp
        self.hits, self.missed = 0, 0
        self.pixel_velocity = (0.0, 0.0)  # px/s
        self.position: np.ndarray | None = None
        self.position_stamp = stamp
        self.velocity: np.ndarray | None = None
        self.trail: deque[tuple[float, float]] = deque(maxlen=TRAIL_POINTS)
        self.see(stamp, instance, 1.0)

    def see(self, stamp: float, instance: Instance, smoothing: float) -> None:
        # An object going behind another, or out of the view, moves its visible part's centre without moving.
        steady = self.hits and min(instance.area, self.area) >= STEADY_AREA * max(instance.area, self.area)
        if steady and stamp > self.stamp:
            dt = stamp - self.stamp
            self.pixel_velocity = tuple(
                old + smoothing * ((new - last) / dt - old)
                for old, new, last in zip(self.pixel_velocity, instance.centroid, self.centroid, strict=True)
            )
        if instance.box3d is not None:
            position = np.asarray(instance.box3d.centroid, dtype=np.float64)
            if steady and self.position is not None and stamp > self.position_stamp:
                measured = (position - self.position) / (stamp - self.position_stamp)
                old = measured if self.velocity is None else self.velocity
                self.velocity = old + smoothing * (measured - old)
            self.position, self.position_stamp = position, stamp
        if not self.hits or stamp > self.stamp:
            self.hits += 1
        self.missed = 0
        self.stamp, self.bbox, self.mask, self.area = stamp, instance.bbox, instance.mask, instance.area
        self.centroid = instance.centroid
        self.trail.append(instance.centroid)

    def predicted_position(self, stamp: float) -> np.ndarray | None:
        if self.position is None or self.velocity is None:
            return self.position
        return self.position + self.velocity * (stamp - self.position_stamp)

    def predicted_offset(self, stamp: float) -> tuple[int, int]:
        dt = stamp - self.stamp
        return round(self.pixel_velocity[0] * dt), round(self.pixel_velocity[1] * dt)


class Tracker:
    """The tracks of one camera, per prompt; `update` once per frame, in stamp order."""

    def __init__(self, settings: TrackingSettings = TrackingSettings(), ids: Iterator[int] | None = None):
        self._settings = settings
        self._ids = ids if ids is not None else itertools.count(1)
        self._tracks: dict[str, list[_Track]] = {}
        self._frame = 0
        self._stamp: float | None = None

    @property
    def settings(self) -> TrackingSettings:
        return self._settings

    def configure(self, settings: TrackingSettings) -> None:
        """New settings from the next frame on; turning tracking off ends every track."""
        if not settings.enabled:
            self.reset()
        self._settings = settings

    @property
    def live_tracks(self) -> int:
        return sum(len(tracks) for tracks in self._tracks.values())

    def reset(self) -> None:
        """End every track (deactivate, cleanup, a replayed recording); ids go on from where they were."""
        self._tracks.clear()
        self._stamp = None

    def end_prompts(self, labels: Iterable[str]) -> None:
        """End the tracks of these prompts: a prompt changed under the same label (a visual prompt replaced)."""
        for label in labels:
            self._tracks.pop(label, None)

    def update(
        self, stamp_s: float, labels: Sequence[str], instances: Sequence[Instance]
    ) -> tuple[TrackedInstance, ...]:
        """This frame's instances with their tracks, in the order given.

        stamp_s: the frame's header stamp in seconds; labels: the frame's prompts (a prompt not among them ends its
        tracks); instances: the frame's instances of those prompts.
        """
        if not self._settings.enabled:
            return tuple(TrackedInstance(i, 0, 0, 0.0, None, ()) for i in instances)
        if self._stamp is not None and stamp_s < self._stamp:
            self.reset()
        repeat = stamp_s == self._stamp
        self._stamp = stamp_s
        if not repeat:
            self._frame += 1
        self.end_prompts([label for label in self._tracks if label not in labels])
        by_label: dict[str, list[int]] = {}
        for index, instance in enumerate(instances):
            by_label.setdefault(instance.label, []).append(index)
        tracks_of: list[_Track | None] = [None] * len(instances)
        # In prompt order: new tracks draw their ids in that order, the same in every run (a set's order of
        # strings changes with each process's hash seed: a recording labelled twice got its ids swapped).
        for label in dict.fromkeys([*labels, *by_label, *self._tracks]):
            indices = by_label.get(label, [])
            associated = self._associate(label, [instances[i] for i in indices], repeat)
            for index, track in zip(indices, associated, strict=True):
                tracks_of[index] = track
        return tuple(self._report(i, track, stamp_s) for i, track in zip(instances, tracks_of, strict=True))

    def _associate(self, label: str, instances: list[Instance], repeat: bool) -> list[_Track]:
        settings, stamp = self._settings, self._stamp
        tracks = self._tracks.get(label, [])
        groups = [[column] for column in range(len(instances))]
        candidates = instances
        matched: list[_Track | None] = [None] * len(instances)
        seen: set[int] = set()
        if tracks and instances:
            cost, covered = self._costs(tracks, instances, stamp)
            groups = _parts(covered)
            if len(groups) < len(instances):
                candidates = [_union([instances[c] for c in group]) for group in groups]
                cost, _ = self._costs(tracks, candidates, stamp)
            matched = [None] * len(candidates)
            # Reported tracks first, then new ones with what is left: a part split off an object for a frame
            # must not win the object from its track.
            for tentative in (False, True):
                rows = [row for row, track in enumerate(tracks) if (track.hits < settings.min_hits) == tentative]
                columns = [column for column, track in enumerate(matched) if track is None]
                if not rows or not columns:
                    continue
                block = cost[np.ix_(rows, columns)]
                for r, c in zip(*linear_sum_assignment(block), strict=True):
                    if block[r, c] < _REFUSED:
                        tracks[rows[r]].see(stamp, candidates[columns[c]], settings.velocity_smoothing)
                        matched[columns[c]] = tracks[rows[r]]
                        seen.add(rows[r])
        kept = []
        for row, track in enumerate(tracks):
            if row not in seen and not repeat:
                track.missed += 1
                if track.hits < settings.min_hits or track.missed > settings.max_missed_frames:
                    continue
            kept.append(track)
        for column, candidate in enumerate(candidates):
            if matched[column] is None:
                matched[column] = _Track(next(self._ids), self._frame, stamp, candidate)
                kept.append(matched[column])
        if kept:
            self._tracks[label] = kept
        else:
            self._tracks.pop(label, None)
        track_of = [None] * len(instances)
        for group, track in zip(groups, matched, strict=True):
            for column in group:
                track_of[column] = track
        return track_of

    def _report(self, instance: Instance, track: _Track, stamp: float) -> TrackedInstance:
        if track.hits < self._settings.min_hits:
            return TrackedInstance(instance, 0, 0, 0.0, None, ())
        velocity = None
        if instance.box3d is not None and track.velocity is not None:
            velocity = tuple(float(v) for v in track.velocity)
        return TrackedInstance(
            instance, track.id, self._frame - track.first_frame, stamp - track.first_stamp, velocity, tuple(track.trail)
        )

    def _costs(self, tracks: list[_Track], instances: list[Instance], stamp: float) -> tuple[np.ndarray, np.ndarray]:
        """(tracks, instances) costs: (1 - mask IoU), plus distance / gate where both have 3D, _REFUSED where the
        gates refuse; and the share of each instance inside each track's predicted mask, 0 where refused by 3D."""
        settings = self._settings
        offsets = [track.predicted_offset(stamp) for track in tracks]
        iou, covered = _mask_overlaps(tracks, offsets, instances)
        cost = np.where(iou >= settings.min_iou, 1.0 - iou, _REFUSED)
        predicted = [track.predicted_position(stamp) for track in tracks]
        with_3d = [row for row, position in enumerate(predicted) if position is not None]
        located = [column for column, instance in enumerate(instances) if instance.box3d is not None]
        if with_3d and located:
            ahead = np.array([predicted[row] for row in with_3d])
            at = np.array([instances[column].box3d.centroid for column in located])
            # Unseen, where a track is grows less certain: its gate widens, to twice gate_m at max_missed_frames.
            gates = [settings.gate_m * (1 + tracks[row].missed / max(settings.max_missed_frames, 1)) for row in with_3d]
            offset = (ahead[:, None, :] - at[None, :, :]) * _AXIS_WEIGHTS
            distance = np.linalg.norm(offset, axis=2) / np.array(gates)[:, None]
            block = np.ix_(with_3d, located)
            cost[block] = np.where(distance <= 1.0, distance + 1.0 - iou[block], _REFUSED)
            covered[block] = np.where(distance <= 1.0, covered[block], 0.0)
        return cost, covered


def _parts(covered: np.ndarray) -> list[list[int]]:
    """Instances grouped by the track whose predicted mask holds at least PART_COVERED of each (the parts of one
    object); the others alone. In order of their first instance."""
    owner = covered.argmax(axis=0)
    groups: dict[object, list[int]] = {}
    for column, row in enumerate(owner):
        groups.setdefault(int(row) if covered[row, column] >= PART_COVERED else ("alone", column), []).append(column)
    return list(groups.values())


def _union(parts: list[Instance]) -> Instance:
    """The parts of one object as one instance, for matching (its 3D is the parts' centres weighted by area)."""
    if len(parts) == 1:
        return parts[0]
    left = min(p.bbox[0] for p in parts)
    top = min(p.bbox[1] for p in parts)
    right = max(p.bbox[0] + p.bbox[2] for p in parts)
    bottom = max(p.bbox[1] + p.bbox[3] for p in parts)
    mask = np.zeros((bottom - top, right - left), bool)
    for p in parts:
        x, y, w, h = p.bbox
        mask[y - top : y - top + h, x - left : x - left + w] |= p.mask
    area = sum(p.area for p in parts)
    weights = [p.area / area for p in parts]
    box3d = None
    if all(p.box3d is not None for p in parts):
        centre = tuple(float(v) for v in np.average([p.box3d.centroid for p in parts], axis=0, weights=weights))
        box3d = Box3D(centre, centre, (0.0, 0.0, 0.0))  # only its centre is compared
    return Instance(
        label_index=parts[0].label_index,
        label=parts[0].label,
        score_max=max(p.score_max for p in parts),
        score_mean=float(np.average([p.score_mean for p in parts], weights=weights)),
        bbox=(left, top, right - left, bottom - top),
        area=area,
        centroid=tuple(float(v) for v in np.average([p.centroid for p in parts], axis=0, weights=weights)),
        mask=mask,
        point_count=sum(p.point_count for p in parts),
        box3d=box3d,
    )


def _mask_overlaps(
    tracks: list[_Track], offsets: list[tuple[int, int]], instances: list[Instance]
) -> tuple[np.ndarray, np.ndarray]:
    """IoU of each track's last mask, moved by its predicted offset, with each instance's mask; and the share of
    each instance's mask inside it."""
    boxes = np.array([(x + dx, y + dy, w, h) for track, (dx, dy) in zip(tracks, offsets, strict=True)
                      for x, y, w, h in (track.bbox,)])  # fmt: skip
    others = np.array([instance.bbox for instance in instances])
    left = np.maximum(boxes[:, None, 0], others[None, :, 0])
    top = np.maximum(boxes[:, None, 1], others[None, :, 1])
    right = np.minimum(boxes[:, None, 0] + boxes[:, None, 2], others[None, :, 0] + others[None, :, 2])
    bottom = np.minimum(boxes[:, None, 1] + boxes[:, None, 3], others[None, :, 1] + others[None, :, 3])
    iou = np.zeros((len(tracks), len(instances)))
    covered = np.zeros_like(iou)
    for row, column in zip(*np.nonzero((right > left) & (bottom > top)), strict=True):
        x0, y0, x1, y1 = left[row, column], top[row, column], right[row, column], bottom[row, column]
        a, b = boxes[row], others[column]
        track, instance = tracks[row], instances[column]
        inside = np.count_nonzero(
            track.mask[y0 - a[1] : y1 - a[1], x0 - a[0] : x1 - a[0]]
            & instance.mask[y0 - b[1] : y1 - b[1], x0 - b[0] : x1 - b[0]]
        )
        iou[row, column] = inside / (track.area + instance.area - inside)
        covered[row, column] = inside / instance.area
    return iou, covered
