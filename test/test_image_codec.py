"""sensor_msgs Image / CompressedImage <-> numpy: encodings, zero-copy views, and every refusal."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from clipseg_ros.ros.image_codec import (
    ImageDecodeError,
    compressed_to_rgb,
    image_to_numpy,
    image_to_rgb,
    mask_to_numpy,
    numpy_to_image,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (7, 5, 3), dtype=np.uint8)


def buffer_of(msg: Image) -> np.ndarray:
    return np.frombuffer(msg.data, np.uint8)


@pytest.mark.parametrize(
    ("encoding", "pixels"),
    [
        ("rgb8", RGB),
        ("bgr8", RGB),
        ("rgba8", RNG.integers(0, 256, (7, 5, 4), dtype=np.uint8)),
        ("bgra8", RNG.integers(0, 256, (7, 5, 4), dtype=np.uint8)),
        ("mono8", RGB[..., 0]),
        ("mono16", RNG.integers(0, 65536, (7, 5), dtype=np.uint16)),
        ("32FC1", RNG.random((7, 5), dtype=np.float32)),
    ],
)
def test_round_trip_is_exact_and_a_view(encoding, pixels):
    msg = numpy_to_image(pixels, encoding)
    assert (msg.width, msg.height, msg.encoding) == (5, 7, encoding)
    decoded = image_to_numpy(msg)
    np.testing.assert_array_equal(decoded, pixels)
    assert np.shares_memory(decoded, buffer_of(msg))


def test_rgb8_is_zero_copy_and_padded_rows_are_a_strided_view():
    msg = numpy_to_image(RGB, "rgb8")
    assert np.shares_memory(image_to_rgb(msg), buffer_of(msg))
    padded = np.zeros((7, 5 * 3 + 9), np.uint8)
    padded[:, :15] = RGB.reshape(7, 15)
    msg = Image(height=7, width=5, encoding="rgb8", step=24, data=padded.tobytes())
    view = image_to_numpy(msg)
    np.testing.assert_array_equal(view, RGB)
    assert np.shares_memory(view, buffer_of(msg))


@pytest.mark.parametrize(
    ("encoding", "pixels", "expected"),
    [
        ("bgr8", RGB[..., ::-1], RGB),
        ("bgra8", np.dstack([RGB[..., ::-1], np.full((7, 5), 9, np.uint8)]), RGB),
        ("rgba8", np.dstack([RGB, np.full((7, 5), 9, np.uint8)]), RGB),
        ("mono8", RGB[..., 1], np.repeat(RGB[..., 1:2], 3, axis=2)),
    ],
)
def test_to_rgb(encoding, pixels, expected):
    rgb = image_to_rgb(numpy_to_image(np.ascontiguousarray(pixels), encoding))
    assert rgb.flags.c_contiguous and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, expected)


def test_mono16_is_stretched_to_its_range_and_big_endian_is_read():
    pixels = np.array([[0, 1024], [2048, 4095]], np.uint16)  # a 12-bit sensor
    rgb = image_to_rgb(numpy_to_image(pixels, "mono16"))
    assert rgb[1, 1, 0] == 255 and rgb[0, 0, 0] == 0 and rgb.shape == (2, 2, 3)
    big = Image(height=2, width=2, encoding="mono16", step=4, is_bigendian=1, data=pixels.astype(">u2").tobytes())
    np.testing.assert_array_equal(image_to_numpy(big), pixels)


def _broken(**fields) -> Image:
    msg = numpy_to_image(RGB, "rgb8")
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize(
    ("msg", "says"),
    [
        (_broken(encoding="yuv422"), "unsupported encoding"),
        (_broken(width=0), "size"),
        (_broken(height=0, width=0), "size"),
        (_broken(width=100_000, height=100_000), "size"),
        (_broken(step=3), "step"),
        (_broken(data=bytes(20)), "data holds"),
    ],
)
def test_bad_images_raise_with_the_reason(msg, says):
    with pytest.raises(ImageDecodeError, match=says):
        image_to_rgb(msg)


@pytest.mark.parametrize("extension", [".jpg", ".png"])
def test_compressed(extension):
    payload = cv2.imencode(extension, cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))[1].tobytes()
    rgb = compressed_to_rgb(CompressedImage(format=extension[1:], data=payload))
    assert rgb.shape == RGB.shape
    if extension == ".png":
        np.testing.assert_array_equal(rgb, RGB)


@pytest.mark.parametrize(
    ("msg", "says"),
    [
        (CompressedImage(format="jpeg", data=b"not an image at all"), "corrupt"),
        (CompressedImage(format="jpeg", data=b""), "empty"),
        (CompressedImage(format="16UC1; compressedDepth png", data=b"\x89PNG"), "compressedDepth"),
    ],
)
def test_bad_compressed_raise_with_the_reason(msg, says):
    with pytest.raises(ImageDecodeError, match=says):
        compressed_to_rgb(msg)


def test_masks_from_mono8_and_32fc1():
    mono = np.array([[0, 1], [255, 0]], np.uint8)
    np.testing.assert_array_equal(mask_to_numpy(numpy_to_image(mono, "mono8")), mono > 0)
    prob = np.array([[0.2, 0.5], [0.9, 0.0]], np.float32)
    np.testing.assert_array_equal(mask_to_numpy(numpy_to_image(prob, "32FC1")), prob >= 0.5)
    with pytest.raises(ImageDecodeError, match="mask"):
        mask_to_numpy(numpy_to_image(RGB, "rgb8"))


def test_encoding_checks_the_array():
    with pytest.raises(ValueError, match="mono8"):
        numpy_to_image(RGB, "mono8")
    with pytest.raises(ValueError, match="32FC1"):
        numpy_to_image(RGB[..., 0], "32FC1")
