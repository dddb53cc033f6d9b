"""Objects over time in the synthetic demo: shapes of one prompt cross, and the node's track ids follow them.

The sample camera stops and the demo sends a short sequence of moving shapes itself (clipseg_ros.train.
synthetic_sequence: true ids, crossings at different depths, its depth aligned), one frame at a time, each once the
node has answered the one before: no frame is dropped, so the ids are the tracker's, not the machine's. The node's
~/overlay of every STRIP_STEP-th frame goes into strips `tracks_<k>.png` (its "#id" tags and trails), and the
summary's "tracks" holds per frame the track id each true object got (matched by mask IoU, as scored) and the
scores over the sequence: ID switches (through the crossing), IDF1, HOTA.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from clipseg_ros.ros.demo.console import say
from clipseg_ros.ros.demo.demo_client import DemoClient, stamped
from clipseg_ros.ros.demo.demo_host import DemoHost
from clipseg_ros.ros.demo.pictures import titled_row
from clipseg_ros.ros.demo.sample_publisher import pinhole_camera_info
from clipseg_ros.ros.image_codec import image_to_rgb
from clipseg_ros.ros.messages import track_masks
from clipseg_ros.train.synthetic_sequence import LABELS, SequenceFrame, SequenceSettings, synthetic_sequence
from clipseg_ros.train.tracking_eval import MATCH_IOU, mask_ious, score

# Seed 0's first 24 frames: each prompt's two shapes cross between frames 1 and 14. Cards larger than the
# generator's default (0.1-0.16 m): at 192 px the model trained on 96 px scenes finds those too rarely.
SEQUENCE_SEED = 0
SEQUENCE = SequenceSettings(frames=24, size=192, radius_m=(0.18, 0.26))
STRIP_STEP, STRIP_FRAMES = 2, 4  # every second frame, four to a picture
CAMERA_QUIET_S = 1.0  # after the camera stops: its last frames are through the node before the prompts change


class TrackTour:
    def __init__(self, demo: DemoHost, client: DemoClient, camera) -> None:
        self.demo, self.client, self.camera = demo, client, camera

    def run(self) -> tuple[list[Path], dict]:
        """The strips written, and the summary's record."""
        frames = synthetic_sequence(SEQUENCE_SEED, SEQUENCE)
        self.demo.stop(self.camera)
        time.sleep(CAMERA_QUIET_S)
        labels = self.client.send_prompt("; ".join(LABELS))  # new prompts: the node starts its tracks afresh
        say(f"objects over time: {len(frames)} frames of moving shapes, prompts {labels}, sent one at a time")
        start = time.time()  # stamps after every camera frame's: a stamp going back would restart the tracks
        hypotheses, pictures = [], []
        for number, frame in enumerate(frames):
            info = pinhole_camera_info(SEQUENCE.size, SEQUENCE.size)
            info.header.frame_id = "camera"
            info.header.stamp.sec, info.header.stamp.nanosec = divmod(round((start + frame.stamp_s) * 1e9), 10**9)
            segmentation = self.client.send_frame(info, frame.image, frame.depth)
            if segmentation is None:
                raise RuntimeError(f"the node never answered frame {number} of the moving shapes")
            hypotheses.append(track_masks(segmentation, frame.depth.shape))
            if number % STRIP_STEP == 0:
                overlay = self.client.collect("overlay", stamped(info.header.stamp), 1, 5.0)
                image = image_to_rgb(overlay["it"][0]) if overlay else frame.image  # the frame, if its overlay is lost
                pictures.append((image, f"frame {number}"))
        written = [
            self.demo.write(f"tracks_{k + 1}.png", titled_row(*zip(*pictures[i : i + STRIP_FRAMES], strict=True)))
            for k, i in enumerate(range(0, len(pictures), STRIP_FRAMES))
        ]
        record = tracks_record(frames, hypotheses)
        say(f"objects over time: {record['id_switches']} ID switches through the crossings (frames "
            f"{record['crossing_frames']}), IDF1 {record['idf1']:.2f}, HOTA {record['hota']:.2f}; "
            f"ids per frame in summary.json")
        return written, record


def tracks_record(frames: list[SequenceFrame], hypotheses: list[list[tuple[int, np.ndarray]]]) -> dict:
    """The summary's "tracks": per frame each true object's track id (None: no published mask covers it at IoU
    MATCH_IOU), the frames where two shapes of one prompt overlap, and the scores over the sequence."""
    scores = score([("demo", frames, hypotheses)])["demo"]
    per_frame = []
    for number, (frame, hyps) in enumerate(zip(frames, hypotheses, strict=True)):
        ious = mask_ious([obj.mask for obj in frame.objects], [mask for _, mask in hyps])
        ids = {
            str(obj.id): hyps[int(row.argmax())][0] if hyps and row.max() >= MATCH_IOU else None
            for obj, row in zip(frame.objects, ious, strict=True)
        }
        per_frame.append({"frame": number, "stamp_s": round(frame.stamp_s, 3), "track_id_of_true_id": ids})
    return {
        "sequence": {"seed": SEQUENCE_SEED, "frames": len(frames), "size": SEQUENCE.size, "labels": list(LABELS)},
        "crossing_frames": crossing_frames(frames),
        "id_switches": int(scores["num_switches"]),
        "idf1": round(scores["idf1"], 3),
        "hota": round(scores["hota"], 3),
        "per_frame": per_frame,
    }


def crossing_frames(frames: list[SequenceFrame]) -> list[int]:
    """Frames where the column spans of two visible objects of one prompt overlap."""
    crossing = []
    for number, frame in enumerate(frames):
        spans: dict[str, list[tuple[int, int]]] = {}
        for obj in frame.objects:
            columns = np.flatnonzero(obj.mask.any(axis=0))
            spans.setdefault(obj.label, []).append((columns.min(), columns.max()))
        if any(len(s) == 2 and s[0][0] <= s[1][1] and s[1][0] <= s[0][1] for s in spans.values()):
            crossing.append(number)
    return crossing

