"""Pure-torch CLIPSeg: no file formats, no ROS."""

from .backbone import ClipBackbone
from .clipseg import ClipSeg
from .config import ClipSegConfig, TextConfig, VisionConfig
from .decoder import ClipSegDecoder

__all__ = ["ClipBackbone", "ClipSeg", "ClipSegConfig", "ClipSegDecoder", "TextConfig", "VisionConfig"]
