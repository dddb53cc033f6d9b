"""CLIPSeg for robots: a ROS-free engine (this package) and a ROS 2 layer (`clipseg_ros.ros`)."""

from .checkpoints import DEFAULT_WEIGHTS, CheckpointError, load_model, save_hf
from .segmenter import SegmentationResult, Segmenter
from .visual_prompt import VisualPrompt, VisualPromptStyle

__all__ = [
    "DEFAULT_WEIGHTS",
    "CheckpointError",
    "SegmentationResult",
    "Segmenter",
    "VisualPrompt",
    "VisualPromptStyle",
    "load_model",
    "save_hf",
]
