"""What the demo's summary.json holds of the node's instances, and its check of their 3D against the synthetic depth."""

from __future__ import annotations

import numpy as np

from clipseg_ros.engine import limits
from clipseg_ros.ros.image_codec import image_to_numpy

# An instance's 3D centroid z further than this from the depth rendered under its mask is reported as off.
Z_TOLERANCE_M = 0.05


def instance_record(instance, rendered_mm: np.ndarray) -> dict:
    """An Instance message as the summary holds it, with the synthetic depth rendered under its mask: the nearest
    depth there holding OBJECT_SURFACE_MIN_SHARE of the mask (the object in front, as the node's 3D rule takes it)."""
    box = instance.bbox
    mask = image_to_numpy(instance.mask) > 0
    under = rendered_mm[box.y_offset : box.y_offset + box.height, box.x_offset : box.x_offset + box.width][mask]
    depths, counts = np.unique(under, return_counts=True)  # nearest first
    front = depths[counts >= limits.OBJECT_SURFACE_MIN_SHARE * under.size]
    record = {
        "label": instance.label,
        "score_max": round(float(instance.score_max), 3),
        "bbox_px": [box.x_offset, box.y_offset, box.width, box.height],
        "area_px": instance.area,
        "has_3d": instance.has_3d,
        "rendered_depth_m": round(float(front[0]) / 1000, 3) if under.size else None,
    }
    if instance.has_3d:
        c, size = instance.centroid_3d, instance.box_size
        record |= {
            "centroid_3d_m": [round(c.x, 3), round(c.y, 3), round(c.z, 3)],
            "box_size_m": [round(size.x, 3), round(size.y, 3), round(size.z, 3)],
            "point_count": instance.point_count,
        }
    return record


def describe(record: dict) -> str:
    head = f"{record['label']} (score {record['score_max']:.2f}, {record['area_px']} px)"
    if not record["has_3d"]:
        return f"{head}: no 3D"
    x, y, z = record["centroid_3d_m"]
    w, h, d = record["box_size_m"]
    return (
        f"{head}: centroid ({x:.3f}, {y:.3f}, {z:.3f}) m, box {w:.2f} x {h:.2f} x {d:.2f} m, "
        f"{record['point_count']} points; synthetic depth rendered there {record['rendered_depth_m']:.3f} m"
    )


def depth_check(perception: list[dict]) -> dict:
    """How far the instances' centroid z lie from the synthetic depth rendered under their masks."""
    errors = [
        abs(i["centroid_3d_m"][2] - i["rendered_depth_m"]) for r in perception for i in r["instances"] if i["has_3d"]
    ]
    return {
        "instances_3d": len(errors),
        "max_z_error_m": round(max(errors, default=0.0), 4),
        "off": sum(e > Z_TOLERANCE_M for e in errors),
    }
