"""Every limit and allowed set of the engine, defined once.

The node's parameters, its topics and service, and the command line all check against these, so a
value one entry point accepts is never refused by another. Each `check_*` returns the value (normalised)
or raises ValueError with the reason.
"""

from __future__ import annotations

import re
from typing import Any

# -- prompts ---------------------------------------------------------------------------------------
# One decoder pass per prompt per frame: beyond this a node cannot keep up with a camera.
MAX_PROMPTS = 32
# CLIP reads at most 75 tokens; no useful prompt is longer, and tokenizing megabytes would stall a loop.
MAX_PROMPT_CHARS = 1000

# -- probabilities -----------------------------------------------------------------------------------
# Open at both ends: threshold 0 would mark every pixel and 1 none, so neither is a mask.
THRESHOLD_MIN = 0.0
THRESHOLD_MAX = 1.0
DEFAULT_THRESHOLD = 0.5

# -- runtime -----------------------------------------------------------------------------------------
# auto: the fastest precision whose masks stay those of fp32 (clipseg_ros.engine.segmenter.resolve_precision).
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEVICE_NAMES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")

# -- backends (who runs the image path: backbone through decoder) ------------------------------------
BACKENDS = ("torch", "onnxruntime", "tensorrt")
# ONNX Runtime int8: weights only, scales per call ("dynamic"), or activations too, from calibration images.
INT8_MODES = ("dynamic", "static")
# The node's `int8` parameter: none, or the mode the engine quantises itself at load; static int8 needs calibration
# images, so it comes as a file from clipseg-export.
INT8_AT_LOAD = ("none", "dynamic")
# A TensorRT engine is built for a range of batch sizes: up to this many images per call (a camera
# stream segments one), each with up to MAX_PROMPTS prompts.
TENSORRT_MAX_IMAGES = 4

# -- images ------------------------------------------------------------------------------------------
# Camera frames the engine takes (sensor_msgs/Image encodings); masks of visual prompts.
IMAGE_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")
MASK_ENCODINGS = ("mono8", "32FC1")
# How a visual prompt's support becomes CLIP's input (clipseg_ros.engine.visual_prompt): the original's, which the
# released weights saw, first.
VISUAL_PROMPT_STYLES = ("crop_blur_highlight352", "square_window")
COMPRESSED_FORMATS = ("jpeg", "png")
# A 4K frame (3840x2160) and square 4096x4096 pass; a decompression bomb declaring more is refused
# from its header, before a byte of pixels is allocated.
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
MAX_IMAGE_SIDE = 16384
# The model's own input: multiples of the patch size, within these sides.
INPUT_SIDE_MIN = 32
INPUT_SIDE_MAX = 2048

# -- model shape (a checkpoint's config.json) --------------------------------------------------------
# Far above any CLIP CLIPSeg builds on (the released ViT-B/16: width 768, 12 layers, 150 M parameters),
# low enough that a corrupt or hostile config.json is refused before a module is built.
MODEL_WIDTH_MAX = 8192
MODEL_LAYERS_MAX = 64
MODEL_MLP_DIM_MAX = 32768
# CLIP's BPE tokenizer emits ids up to 49407: a smaller embedding table fails on every text prompt.
MODEL_VOCAB_MIN = 49408
MODEL_VOCAB_MAX = 1_000_000
MODEL_CONTEXT_MAX = 1024
# Smaller patches turn a camera frame into tens of thousands of tokens (attention is quadratic in them).
MODEL_PATCH_SIZE_MIN = 8
MODEL_PATCH_SIZE_MAX = 64
# 4 GB of fp32 weights, nearly seven times the released model.
MAX_MODEL_PARAMETERS = 1_000_000_000
# One look-up decides whether a hub id is downloaded or taken from the local cache: an offline robot
# starts (or fails with the way out) in seconds, not after the hub client's retries.
HUB_PROBE_S = 2.0


def check_threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"threshold must be a number, got {value!r}")
    if not THRESHOLD_MIN < value < THRESHOLD_MAX:
        raise ValueError(f"threshold must be in ({THRESHOLD_MIN:g}, {THRESHOLD_MAX:g}), got {value}")
    return float(value)


def check_prompt_count(count: int) -> int:
    if count > MAX_PROMPTS:
        raise ValueError(f"{count} prompts; at most {MAX_PROMPTS}")
    return count


def check_choice(what: str, value: Any, options: tuple[str, ...]) -> str:
    """`value` if it is one of `options`; what: the name in the message ("precision", "backend", ...)."""
    if value not in options:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(options)}")
    return value


def check_device_name(value: str) -> str:
    if not isinstance(value, str) or not _DEVICE.fullmatch(value):
        raise ValueError(f"device {value!r} is not one of {DEVICE_NAMES}")
    return value


def check_input_size(size: Any) -> tuple[int, int]:
    """(height, width) from one side or two; the patch-size multiple is the model's own check."""
    sides = (size, size) if isinstance(size, int) else tuple(size)
    if len(sides) != 2 or any(isinstance(s, bool) or not isinstance(s, int) for s in sides):
        raise ValueError(f"input_size must be one or two integers (height, width), got {size!r}")
    if any(not INPUT_SIDE_MIN <= s <= INPUT_SIDE_MAX for s in sides):
        raise ValueError(f"input_size sides must be in {INPUT_SIDE_MIN}..{INPUT_SIDE_MAX}, got {size!r}")
    return sides


def check_image_size(width: int, height: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
    """Refuse an image by its declared size, before anything is allocated for it."""
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise ValueError(f"image size {width}x{height} outside 1..{MAX_IMAGE_SIDE} per side")
    if width * height > max_pixels:
        raise ValueError(f"image size {width}x{height} is {width * height} pixels, above the limit of {max_pixels}")


# -- perception: instances, depth -> 3D, points (clipseg_ros.perception) ----------------------------------
# A region smaller than this (pixels) is a speck of CLIPSeg's upsampled 22x22 token grid, not an object.
DEFAULT_MIN_AREA = 100
# REP-118 depth images: 16UC1 millimetres, 32FC1 metres.
DEPTH_ENCODINGS = ("16UC1", "32FC1")
# Depth cameras measure nothing closer than about 0.1 m, and stereo/ToF error grows with distance squared.
DEFAULT_DEPTH_MIN_M = 0.1
DEFAULT_DEPTH_MAX_M = 10.0
DEPTH_MAX_LIMIT_M = 1000.0
# A depth sample farther than this share of its depth from a neighbour's sits on an edge (a flying pixel). A box
# 0.15 m tall on a table 1.2 m away is a 12 % jump; a floor seen from 0.5 m up steps under 4 % per pixel to 10 m.
DEPTH_EDGE_RATIO = 0.05
# Fewer valid depth points than this in a region and its 3D position is not given (never guessed).
DEFAULT_MIN_POINTS = 20
# An object's points lie within this of the median depth of the surface it is found on (yolo_ros's detect_3d_node
# gates the same way, 0.3 m): where that surface runs on into the background it stands on, it is cut there; 0.5 m
# keeps chairs and boxes whole.
DEFAULT_OBJECT_DEPTH_M = 0.5
# A depth surface under a mask holding less than this share of its valid points is never taken for the object (a
# streak of flying pixels, a sliver of something in front): the nearest surface holding it is. A 6 cm cube at
# 1.5 m under a mask spilling 6 pixels past it holds 39 %; a 3 cm one 20 %. Valid depth at under this share of the
# mask's core (its inner half) is an object whose own depth is lost, with only the background around it measured.
OBJECT_SURFACE_MIN_SHARE = 0.1
# More than this share of those points in front of that surface, on surfaces too small to be taken, is an object
# too poorly measured to be found (its depth lost to holes and flying pixels): its 3D is then unknown, not the
# background's behind it.
OBJECT_AHEAD_MAX_SHARE = 0.02
# The 3D box spans the 1st to 99th percentile per axis: a few flying pixels at depth edges do not stretch it.
BOX_PERCENTILE = 1.0
# An instance's 3D comes from a grid of about this many of its pixels (all of them when it is smaller): a
# median and percentiles of 2500 points are within millimetres of those of all, at a fixed cost per instance.
LOCATE_POINTS = 2500
# Point clouds keep every n-th pixel per row and column: 4 gives a 640x480 frame at most 19200 points per prompt.
DEFAULT_POINT_STRIDE = 4
MAX_POINT_STRIDE = 64
# Colour and depth stamps within this many seconds are one frame: unsynchronised streams at 15 Hz are at most
# half a period (0.033 s) apart; a robot at 1 m/s moves 5 cm in that time.
DEFAULT_SYNC_TOLERANCE_S = 0.05
MAX_SYNC_TOLERANCE_S = 1.0
# Depth frames kept to pair with colour frames: 0.3 s at 30 Hz, more than a colour frame waits in the node.
DEPTH_HISTORY = 10
# A depth stream whose newest frame is this much older than a colour frame is taken as stopped: colour frames
# then go on without 3D at once instead of waiting for depth that is not coming.
DEPTH_STREAM_LIVE_S = 1.0


def check_count(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """An integer in minimum..maximum (no upper bound when maximum is None)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_positive_number(name: str, value: Any, maximum: float) -> float:
    """A number in (0, maximum]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= maximum:
        raise ValueError(f"{name} must be a number in (0, {maximum:g}], got {value!r}")
    return float(value)


def check_depth_range(min_m: Any, max_m: Any) -> tuple[float, float]:
    for name, value in (("depth min", min_m), ("depth max", max_m)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= DEPTH_MAX_LIMIT_M:
            raise ValueError(f"{name} must be a number of metres in 0..{DEPTH_MAX_LIMIT_M:g}, got {value!r}")
    if not min_m < max_m:
        raise ValueError(f"depth range must have min < max, got {min_m}..{max_m} m")
    return float(min_m), float(max_m)


# -- objects over time: tracks, steady masks (clipseg_ros.perception.tracking, .temporal_filter) -------------
# A track outlives this many frames without its object (an occlusion by something passing in front, a short exit
# from the view: 10 frames are 0.5 s at 20 Hz), then ends; its id is never given again.
DEFAULT_TRACK_MAX_MISSED = 10
TRACK_MAX_MISSED_LIMIT = 1000
# A track is reported from its third frame on: a blob seen once or twice (a flicker of the model) is not a track.
DEFAULT_TRACK_MIN_HITS = 3
TRACK_MIN_HITS_LIMIT = 100
# An object with 3D is the same object only within this distance of where its track is predicted (metres, camera
# frame): wide enough for a hand-carried object's turn between frames, narrower than two cups on a table apart.
DEFAULT_TRACK_GATE_M = 0.3
TRACK_GATE_MAX_M = 10.0
# Without 3D, an instance continues a track only when its mask overlaps the track's predicted mask this much (IoU).
DEFAULT_TRACK_MIN_IOU = 0.1
# Weight of the newest measurement in the exponential average of a track's velocity (1: no smoothing).
DEFAULT_VELOCITY_SMOOTHING = 0.5
# Weight of the newest frame in the exponential average of each prompt's probability map (1: no averaging), and
# the hysteresis around it: a pixel turns on at or above the on threshold and off only below the off threshold.
# On a still scene with noise (clipseg_ros.train.tracking_eval.noisy_still_scene, noise 0.08 to 0.2) these cut the
# flicker to 2-7 % of the unfiltered masks' with an IoU to the truth no lower; a lower off threshold (0.35) keeps
# pixels of the soft edge on and lowers the IoU, a weight of 0.5 halves the lag but flickers up to 17 %.
DEFAULT_TEMPORAL_SMOOTHING = 0.3
DEFAULT_TEMPORAL_ON = DEFAULT_THRESHOLD
DEFAULT_TEMPORAL_OFF = 0.4
# The node's steady masks turn a pixel on at its `threshold` and off below threshold x (1 - hysteresis): the same
# 0.5 -> 0.4 by default, and a threshold changed at runtime keeps a hysteresis below it.
DEFAULT_TEMPORAL_HYSTERESIS = 1 - DEFAULT_TEMPORAL_OFF / DEFAULT_TEMPORAL_ON
TEMPORAL_HYSTERESIS_MAX = 0.9


def check_fraction(name: str, value: Any) -> float:
    """A number in (0, 1]: a weight or an overlap."""
    return check_positive_number(name, value, 1.0)


def check_hysteresis(on: Any, off: Any) -> tuple[float, float]:
    """(on, off) thresholds, both in (0, 1), with off <= on."""
    on, off = check_threshold(on), check_threshold(off)
    if off > on:
        raise ValueError(f"the off threshold ({off:g}) must not be above the on threshold ({on:g})")
    return on, off
