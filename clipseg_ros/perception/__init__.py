"""Post-processing of the engine's masks into what grasping and navigation use: instances, 3D, points.

Pure numpy and OpenCV (no ROS, no torch): `perceive` takes one frame's per-prompt maps and, optionally, the
depth frame paired with it; the ROS layer turns its result into messages (`clipseg_ros.ros.messages`).
"""

from clipseg_ros.perception.depth import AlignedDepth, DepthInput
from clipseg_ros.perception.instances import Box3D, Instance, find_instances
from clipseg_ros.perception.intrinsics import Intrinsics
from clipseg_ros.perception.locate import locate
from clipseg_ros.perception.pipeline import Perception, PerceptionSettings, perceive
from clipseg_ros.perception.points import Points, extract_points

__all__ = [
    "AlignedDepth",
    "Box3D",
    "DepthInput",
    "Instance",
    "Intrinsics",
    "Perception",
    "PerceptionSettings",
    "Points",
    "extract_points",
    "find_instances",
    "locate",
    "perceive",
]
