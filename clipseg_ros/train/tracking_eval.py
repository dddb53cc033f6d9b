"""Trackers scored against a synthetic sequence's true ids, with py-motmetrics (test and bench only).

Setting 1: the tracker is fed the true masks with a detector's faults (`Faults`: detections dropped, objects split
in two, masks shifted by a few pixels), each with its 3D from the frame's depth. The same detections go to this
package's tracker and to ByteTrack (supervision's, boxes only) one per prompt, so the two differ in nothing else.
A later setting feeds the node the frames (`SequenceFrame.image`) and scores its published ids with `score`.

Two standard libraries: py-motmetrics for IDF1 and ID switches (the targets) and MOTA, from the MOTChallenge
definitions (its box IoU helper is unusable on NumPy 2, np.asfarray, and masks are what is tracked anyway:
hypotheses match the truth by mask IoU at least 0.5, as MOTS scores segmentation tracks); TrackEval for HOTA with
its detection and association parts DetA and AssA (motmetrics 1.4 has none), fed each frame's mask IoU as the
similarity, averaged over its 19 localisation thresholds as TrackEval reports them. TrackEval is installed without
its declared dependencies (requirements/test-nodeps.txt: it declares opencv-python).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import motmetrics
import numpy as np
from trackeval.metrics import HOTA

from clipseg_ros.perception.instances import Box3D, Instance
from clipseg_ros.perception.tracking import Tracker, TrackingSettings
from clipseg_ros.train.synthetic_sequence import LABELS, SequenceFrame, SequenceSettings

METRICS = ("idf1", "num_switches", "mota", "num_false_positives", "num_misses", "num_fragmentations")
HOTA_METRICS = {"hota": "HOTA", "deta": "DetA", "assa": "AssA"}  # ours: TrackEval's field
MATCH_IOU = 0.5
# A split leaves a cut this wide between the two parts, so they are two regions as a detector gives them.
_CUT_PX = 2


@dataclass(frozen=True)
class Faults:
    drop: float = 0.1  # share of detections lost
    split: float = 0.05  # share of detections cut in two
    jitter_px: int = 2  # each mask shifted by up to this many pixels per axis
    min_area: int = 20  # parts smaller than this are not detections


# One frame's hypotheses: (track id, mask) per reported instance.
Hypotheses = list[tuple[int, np.ndarray]]


def faulty_detections(
    frames: Sequence[SequenceFrame], settings: SequenceSettings, faults: Faults, seed: int, with_3d: bool = True
) -> list[list[Instance]]:
    """Per frame, the instances a faulty detector gives for the true objects; 3D (median depth under the mask)
    unless `with_3d` is False."""
    rng = np.random.default_rng(seed)
    camera = settings.intrinsics()
    detections = []
    for frame in frames:
        found = []
        for obj in frame.objects:
            if rng.random() < faults.drop:
                continue
            shift = rng.integers(-faults.jitter_px, faults.jitter_px + 1, 2)
            mask = _shifted(obj.mask, int(shift[0]), int(shift[1]))
            parts = _split(mask, rng) if rng.random() < faults.split else [mask]
            for part in parts:
                if np.count_nonzero(part) >= faults.min_area:
                    found.append(_instance(part, obj.label, frame.depth if with_3d else None, camera))
        detections.append(found)
    return detections


def run_tracker(
    frames: Sequence[SequenceFrame], detections: Sequence[list[Instance]], settings: TrackingSettings
) -> list[Hypotheses]:
    tracker = Tracker(settings)
    hypotheses = []
    for frame, found in zip(frames, detections, strict=True):
        masks: dict[int, np.ndarray] = {}  # the parts of one object share its track's id: one mask
        for t in tracker.update(frame.stamp_s, LABELS, found):
            if t.track_id:
                mask = _full_mask(t.instance, frame)
                masks[t.track_id] = masks[t.track_id] | mask if t.track_id in masks else mask
        hypotheses.append(list(masks.items()))
    return hypotheses


def run_bytetrack(
    frames: Sequence[SequenceFrame], detections: Sequence[list[Instance]], tracking: TrackingSettings
) -> list[Hypotheses]:
    """ByteTrack (supervision's) on the detections' boxes, one per prompt, with the same patience and min hits."""
    import warnings

    import supervision

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for the `trackers` package (opencv-python)
        trackers = {
            label: supervision.ByteTrack(
                lost_track_buffer=tracking.max_missed_frames,
                frame_rate=30,  # ByteTrack scales the buffer by frame_rate / 30: this keeps it in frames
                minimum_consecutive_frames=tracking.min_hits,
            )
            for label in LABELS
        }
    hypotheses = []
    for frame, found in zip(frames, detections, strict=True):
        reported = []
        for offset, label in enumerate(LABELS):
            mine = [i for i in found if i.label == label]
            boxes = np.array([(x, y, x + w, y + h) for x, y, w, h in (i.bbox for i in mine)], float).reshape(-1, 4)
            result = trackers[label].update_with_detections(
                supervision.Detections(
                    xyxy=boxes, confidence=np.full(len(mine), 0.9), data={"index": np.arange(len(mine))}
                )
            )
            if not len(result):  # then it returns Detections.empty(), without our data
                continue
            for index, track_id in zip(result.data["index"], result.tracker_id, strict=True):
                # Ids count per ByteTrack instance: spread so that prompts do not share ids.
                reported.append((int(track_id) * len(LABELS) + offset, _full_mask(mine[index], frame)))
        hypotheses.append(reported)
    return hypotheses


def score(sequences: Sequence[tuple[str, Sequence[SequenceFrame], Sequence[Hypotheses]]]) -> dict[str, dict]:
    """The METRICS from motmetrics and HOTA_METRICS from TrackEval per named sequence and 'OVERALL', matching
    hypotheses to the truth by mask IoU."""
    accumulators, names, hota = [], [], HOTA()
    per_sequence_hota = {}
    for name, frames, hypotheses in sequences:
        accumulator = motmetrics.MOTAccumulator(auto_id=True)
        similarities = []
        for frame, hyps in zip(frames, hypotheses, strict=True):
            similarity = mask_ious([o.mask for o in frame.objects], [mask for _, mask in hyps])
            similarities.append(similarity)
            distance = 1.0 - similarity
            distance[distance > 1.0 - MATCH_IOU] = np.nan
            accumulator.update([o.id for o in frame.objects], [track_id for track_id, _ in hyps], distance)
        accumulators.append(accumulator)
        names.append(name)
        per_sequence_hota[name] = hota.eval_sequence(_hota_data(frames, hypotheses, similarities))
    summary = motmetrics.metrics.create().compute_many(
        accumulators, metrics=list(METRICS), names=names, generate_overall=True
    )
    per_sequence_hota["OVERALL"] = hota.combine_sequences(per_sequence_hota)
    return {
        name: {metric: float(row[metric]) for metric in METRICS} | _hota_figures(per_sequence_hota[name])
        for name, row in summary.iterrows()
    }


def _hota_data(
    frames: Sequence[SequenceFrame], hypotheses: Sequence[Hypotheses], similarities: list[np.ndarray]
) -> dict:
    """One sequence as TrackEval's metrics take it: per frame the ids (numbered 0.. within the sequence) and
    the similarity of every true object to every hypothesis."""
    truth_ids = {i: n for n, i in enumerate(sorted({o.id for f in frames for o in f.objects}))}
    track_ids = {i: n for n, i in enumerate(sorted({t for hyps in hypotheses for t, _ in hyps}))}
    gt = [np.array([truth_ids[o.id] for o in f.objects], int) for f in frames]
    tracker = [np.array([track_ids[t] for t, _ in hyps], int) for hyps in hypotheses]
    return {
        "num_gt_ids": len(truth_ids), "num_tracker_ids": len(track_ids),
        "num_gt_dets": sum(map(len, gt)), "num_tracker_dets": sum(map(len, tracker)),
        "gt_ids": gt, "tracker_ids": tracker, "similarity_scores": similarities,
    }  # fmt: skip


def _hota_figures(result: dict) -> dict[str, float]:
    return {metric: float(np.mean(result[field])) for metric, field in HOTA_METRICS.items()}


def mask_ious(truth: list[np.ndarray], hypotheses: list[np.ndarray]) -> np.ndarray:
    """(len(truth), len(hypotheses)) IoU of every true mask with every hypothesis' mask."""
    if not truth or not hypotheses:
        return np.zeros((len(truth), len(hypotheses)))
    a = np.stack(truth).reshape(len(truth), -1).astype(np.float32)
    b = np.stack(hypotheses).reshape(len(hypotheses), -1).astype(np.float32)
    inter = a @ b.T
    return inter / (a.sum(1)[:, None] + b.sum(1)[None, :] - inter)


def _shifted(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _split(mask: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """The mask cut by a line through its centroid at a random angle, a cut _CUT_PX wide between the parts."""
    rows, columns = np.nonzero(mask)
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    side = (x - columns.mean()) * np.cos(angle) + (y - rows.mean()) * np.sin(angle)
    return [mask & (side > _CUT_PX / 2), mask & (side < -_CUT_PX / 2)]


def _instance(mask: np.ndarray, label: str, depth: np.ndarray | None, camera) -> Instance:
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    rows, columns = np.nonzero(mask)
    centroid = (float(columns.mean()), float(rows.mean()))
    box3d = None
    if depth is not None:
        z = float(np.median(depth[mask]))
        position = ((centroid[0] - camera.cx) * z / camera.fx, (centroid[1] - camera.cy) * z / camera.fy, z)
        box3d = Box3D(position, position, (w * z / camera.fx, h * z / camera.fy, 0.0))
    return Instance(
        label_index=LABELS.index(label),
        label=label,
        score_max=1.0,
        score_mean=1.0,
        bbox=(x, y, w, h),
        area=len(rows),
        centroid=centroid,
        mask=np.ascontiguousarray(mask[y : y + h, x : x + w]),
        point_count=len(rows) if depth is not None else 0,
        box3d=box3d,
    )


def _full_mask(instance: Instance, frame: SequenceFrame) -> np.ndarray:
    x, y, w, h = instance.bbox
    mask = np.zeros(frame.depth.shape, bool)
    mask[y : y + h, x : x + w] = instance.mask
    return mask


def noisy_still_scene(
    seed: int, frames: int = 60, size: int = 96, noise: float = 0.12
) -> tuple[np.ndarray, np.ndarray]:
    """(frames, size, size) float32 probability maps of one still disc, as a model gives them on a camera's noisy
    frames: a soft edge (0.5 on the true border) plus noise of the model's coarse grid (smooth, upsampled from
    22 x 22 tokens) and of single pixels; and the (size, size) bool true mask."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    distance = np.hypot(x - size / 2, y - size / 2) - size / 4
    truth = distance <= 0
    clean = 1 / (1 + np.exp(distance / 3.0))
    maps = []
    for _ in range(frames):
        coarse = cv2.resize(rng.normal(0, noise, (22, 22)).astype(np.float32), (size, size))
        maps.append(np.clip(clean + coarse + rng.normal(0, noise / 2, (size, size)), 0, 1))
    return np.stack(maps).astype(np.float32), truth


def flicker(masks: np.ndarray) -> float:
    """Share of mask pixels that change between consecutive frames: mean of |changed| / |union| over the pairs."""
    changed = (masks[1:] ^ masks[:-1]).reshape(len(masks) - 1, -1).sum(1)
    union = (masks[1:] | masks[:-1]).reshape(len(masks) - 1, -1).sum(1)
    return float(np.mean(changed / np.maximum(union, 1)))


def mean_iou(masks: np.ndarray, truth: np.ndarray) -> float:
    """Mean IoU of each frame's mask with the true mask."""
    inter = (masks & truth).reshape(len(masks), -1).sum(1)
    union = (masks | truth).reshape(len(masks), -1).sum(1)
    return float(np.mean(inter / np.maximum(union, 1)))
