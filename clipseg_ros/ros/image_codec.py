"""sensor_msgs Image / CompressedImage <-> numpy, without cv_bridge (ROS 2's is not installable here).

Decoding returns views into the message's buffer when the layout allows (any `step` padding becomes a
strided view, not a copy); every failure raises `ImageDecodeError` with the reason, so that a bad frame
costs one warning and never the node. Sizes are refused from what a message declares (its width and height,
a PNG or JPEG header) before pixels are allocated. Camera frames and masks are taken in the encodings of
limits.IMAGE_ENCODINGS and limits.MASK_ENCODINGS.
"""

from __future__ import annotations

import array

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from clipseg_ros.engine import limits
from clipseg_ros.engine.image_header import ImageHeaderError, check_declared_size

# encoding -> (dtype, channels) of every encoding read or written here: frames, masks, outputs (32FC1
# probabilities) and depth. What each use accepts is in limits.
_LAYOUTS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "16UC1": (np.dtype(np.uint16), 1),  # REP-118 depth, millimetres
}


class ImageDecodeError(ValueError):
    """A message that cannot be read as an image; the text says why."""


def image_to_numpy(msg: Image, max_pixels: int = limits.DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """The pixels in the message's own encoding: (H, W) or (H, W, C), a view of `msg.data` when possible.

    Any encoding this module writes is read back; image_to_rgb and mask_to_numpy narrow that to what a
    frame or a mask may be.
    """
    if msg.encoding not in _LAYOUTS:
        raise ImageDecodeError(f"unsupported encoding {msg.encoding!r}; readable: {', '.join(_LAYOUTS)}")
    dtype, channels = _LAYOUTS[msg.encoding]
    height, width, step = msg.height, msg.width, msg.step
    try:
        limits.check_image_size(width, height, max_pixels)
    except ValueError as exc:
        raise ImageDecodeError(str(exc)) from exc
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError(f"step {step} is shorter than {width} {msg.encoding} pixels ({row_bytes} bytes)")
    if len(msg.data) < step * height:
        raise ImageDecodeError(f"data holds {len(msg.data)} bytes, {height} rows of step {step} need {step * height}")
    rows = np.frombuffer(msg.data, dtype=np.uint8, count=step * height).reshape(height, step)
    pixels = rows[:, :row_bytes]
    if step % dtype.itemsize == 0:
        pixels = pixels.view(dtype)  # strided view: no copy even with row padding
    else:  # rows not aligned to the pixel type: one copy
        pixels = np.ascontiguousarray(pixels).view(dtype)
    if dtype.itemsize > 1 and bool(msg.is_bigendian) == np.little_endian:  # byte order differs from ours
        pixels = pixels.byteswap()
    return pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)


def image_to_rgb(msg: Image, max_pixels: int = limits.DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB, C-contiguous (a view for tightly packed rgb8, else one copy), from a camera frame
    in one of limits.IMAGE_ENCODINGS."""
    _check_encoding(msg.encoding, limits.IMAGE_ENCODINGS, "a camera frame")
    pixels = image_to_numpy(msg, max_pixels)
    encoding = msg.encoding
    if encoding == "rgb8":
        rgb = pixels
    elif encoding in ("bgr8", "bgra8"):
        rgb = pixels[..., 2::-1]
    elif encoding == "rgba8":
        rgb = pixels[..., :3]
    elif encoding == "mono8":
        rgb = np.repeat(pixels[..., None], 3, axis=2)
    elif encoding == "mono16":
        # Stretch the frame's own range: 10/12-bit sensors would be nearly black scaled by 1/256.
        peak = int(pixels.max())
        scaled = (pixels.astype(np.float32) * (255.0 / peak)) if peak else np.zeros(pixels.shape, np.float32)
        rgb = np.repeat(scaled.astype(np.uint8)[..., None], 3, axis=2)
    return np.ascontiguousarray(rgb)


def compressed_to_rgb(msg: CompressedImage, max_pixels: int = limits.DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a CompressedImage in one of limits.COMPRESSED_FORMATS.

    The size the header declares is refused above `max_pixels` (or limits.MAX_IMAGE_SIDE per side) before
    the decoder runs: a decompression bomb costs a header read, not gigabytes.
    """
    if "compresseddepth" in msg.format.lower().replace(" ", ""):
        raise ImageDecodeError(f"compressedDepth images are not camera frames (format {msg.format!r})")
    if len(msg.data) == 0:
        raise ImageDecodeError("empty compressed image")
    try:
        check_declared_size(msg.data, max_pixels)
    except ImageHeaderError as exc:
        raise ImageDecodeError(f"compressed image ({msg.format!r}, {len(msg.data)} bytes) refused: {exc}") from exc
    bgr = cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError(f"corrupt compressed image ({msg.format!r}, {len(msg.data)} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def mask_to_numpy(msg: Image, max_pixels: int = limits.DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """(H, W) bool: mono8 non-zero, or 32FC1 >= 0.5 (limits.MASK_ENCODINGS)."""
    _check_encoding(msg.encoding, limits.MASK_ENCODINGS, "a mask")
    pixels = image_to_numpy(msg, max_pixels)
    return pixels > 0 if msg.encoding == "mono8" else pixels >= 0.5


def _check_encoding(encoding: str, accepted: tuple[str, ...], use: str) -> None:
    if encoding not in accepted:
        raise ImageDecodeError(f"unsupported encoding {encoding!r} for {use}; accepted: {', '.join(accepted)}")


def mask_to_image(mask: np.ndarray, header: Header | None = None) -> Image:
    """A mono8 mask message, 255 where `mask` (H, W bool) is set: the inverse of mask_to_numpy."""
    return numpy_to_image(mask.view(np.uint8) * np.uint8(255), "mono8", header)


def is_empty(msg: Image) -> bool:
    return msg.width == 0 or msg.height == 0


def numpy_to_image(pixels: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """An Image message holding `pixels` (one copy into the message's buffer)."""
    if encoding not in _LAYOUTS:
        raise ValueError(f"unsupported encoding {encoding!r}")
    dtype, channels = _LAYOUTS[encoding]
    expected_ndim = 2 if channels == 1 else 3
    if pixels.dtype != dtype or pixels.ndim != expected_ndim or (channels > 1 and pixels.shape[2] != channels):
        raise ValueError(f"{encoding} needs {dtype} pixels of {channels} channel(s), got {pixels.dtype} {pixels.shape}")
    pixels = np.ascontiguousarray(pixels)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0 if np.little_endian else 1
    msg.step = msg.width * channels * dtype.itemsize
    data = array.array("B")
    data.frombytes(memoryview(pixels).cast("B"))
    msg.data = data
    return msg
