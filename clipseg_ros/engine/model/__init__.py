"""Pure-torch CLIPSeg: no file formats, no ROS."""

from clipseg_ros.engine.model.backbone import ClipBackbone
from clipseg_ros.engine.model.clipseg import ClipSeg
from clipseg_ros.engine.model.config import ClipSegConfig, TextConfig, VisionConfig
from clipseg_ros.engine.model.decoder import ClipSegDecoder

__all__ = ["ClipBackbone", "ClipSeg", "ClipSegConfig", "ClipSegDecoder", "TextConfig", "VisionConfig"]
