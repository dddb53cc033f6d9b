"""sensor_msgs Image / CompressedImage <-> numpy: encodings, zero-copy views, and every refusal."""

from __future__ import annotations

import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from clipseg_ros.engine import limits
from clipseg_ros.engine.image_header import ImageHeaderError, declared_size
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
        (CompressedImage(format="jpeg", data=b"not an image at all"), "not a jpeg or png image"),
        (CompressedImage(format="png", data=cv2.imencode(".png", RGB)[1].tobytes()[:40]), "corrupt"),
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


# -- sizes refused from what a message declares ---------------------------------------------------------


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG of zeros: hundreds of kB that decode to width x height bytes.

    Deflating the rows one by one takes seconds. After a full flush deflate forgets what came before, so every
    band of rows compresses to the same bytes: one band is compressed and repeated, and the stream's Adler-32
    is that of all the rows."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    band_rows = min(64, height)
    band, rest = bytes(width + 1) * band_rows, bytes(width + 1) * (height % band_rows)  # filter byte 0 + the row
    bands = height // band_rows
    compressor = zlib.compressobj(9)
    first = compressor.compress(band) + compressor.flush(zlib.Z_FULL_FLUSH)  # with the zlib header
    repeated = compressor.compress(band) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert first.endswith(repeated)
    last = compressor.compress(rest) + compressor.flush()
    checksum = 1
    for _ in range(bands):
        checksum = zlib.adler32(band, checksum)
    stream = first + repeated * (bands - 1) + last[:-4] + struct.pack(">I", zlib.adler32(rest, checksum))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int, **params) -> bytes:
    """A small real JPEG whose frame header (SOFn) is patched to declare width x height."""
    flags = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if params.get("progressive") else []
    data = bytearray(cv2.imencode(".jpg", RGB, flags)[1].tobytes())
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize(("width", "height"), [(40, 30), (40, 130)])  # one band; bands repeated and the rest
def test_the_png_generator_makes_real_pngs(width, height):
    payload = png_of_zeros(width, height)
    decoded = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert decoded.shape == (height, width) and not decoded.any()
    assert zlib.decompress(payload[41:-16]) == bytes((width + 1) * height)  # IDAT's stream, Adler-32 checked


@pytest.mark.parametrize("progressive", [False, True])
def test_header_sizes_of_real_files(progressive):
    flags = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    assert declared_size(cv2.imencode(".jpg", RGB, flags)[1]) == ("jpeg", 5, 7)
    assert declared_size(cv2.imencode(".png", RGB)[1]) == ("png", 5, 7)
    assert declared_size(jpeg_declaring(640, 480, progressive=progressive)) == ("jpeg", 640, 480)


@pytest.mark.parametrize("extension", [".bmp", ".webp", ".tiff"])
def test_formats_the_header_reader_cannot_size_are_refused(extension):
    payload = cv2.imencode(extension, RGB)[1].tobytes()
    with pytest.raises(ImageDecodeError, match="not a jpeg or png image") as error:
        compressed_to_rgb(CompressedImage(format=extension[1:], data=payload))
    assert "only these formats are accepted" in str(error.value)


@pytest.mark.parametrize(
    "payload",
    [b"\x89PNG\r\n\x1a\n\x00\x00", b"\xff\xd8\xff\xe1\x00\x01", b"\xff\xd8\xff\xda\x00\x08" + bytes(8)],
    ids=["png-truncated", "jpeg-bad-length", "jpeg-no-frame-header"],
)
def test_headers_that_cannot_be_read_are_refused(payload):
    with pytest.raises(ImageHeaderError):
        declared_size(payload)


def peak_rss_growth(action) -> tuple[int, float]:
    """Bytes the process's peak RSS grew by while `action` ran (its peak reset first), and the seconds it took."""
    status = Path("/proc/self/status")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    except OSError:
        pytest.skip("no /proc/self/clear_refs to reset the peak RSS")

    def kib(field: str) -> int:
        line = next(line for line in status.read_text().splitlines() if line.startswith(field))
        return int(line.split()[1])

    before = kib("VmRSS:")
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    return (kib("VmHWM:") - before) * 1024, seconds


BOMBS = {
    "png-30000x30000": lambda: png_of_zeros(30000, 30000),  # about 875 kB: 900 MB of pixels
    "png-16384x16384": lambda: png_of_zeros(16384, 16384),  # about 261 kB; within the side limit, not the count
    "jpeg-30000x30000": lambda: jpeg_declaring(30000, 30000),
    "jpeg-progressive-16384x16384": lambda: jpeg_declaring(16384, 16384, progressive=True),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_decompression_bombs_are_refused_from_the_header_without_allocating(name):
    msg = CompressedImage(format=name.split("-")[0], data=BOMBS[name]())

    def refuse():
        with pytest.raises(ImageDecodeError, match="refused before decoding"):
            compressed_to_rgb(msg)

    tracemalloc.start()
    try:
        refuse()
        traced_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    rss_growth, seconds = peak_rss_growth(refuse)
    print(f"{name} ({len(msg.data) / 1e3:.0f} kB): refused in {seconds * 1e3:.2f} ms, "
          f"python peak {traced_peak / 1e6:.2f} MB, peak RSS +{rss_growth / 1e6:.1f} MB")
    assert traced_peak < 100e6 and rss_growth < 100e6


def test_max_pixels_is_the_callers():
    payload = cv2.imencode(".png", np.zeros((40, 50, 3), np.uint8))[1].tobytes()
    assert compressed_to_rgb(CompressedImage(format="png", data=payload), max_pixels=2000).shape == (40, 50, 3)
    with pytest.raises(ImageDecodeError, match="above the limit of 1999"):
        compressed_to_rgb(CompressedImage(format="png", data=payload), max_pixels=1999)
    raw = numpy_to_image(np.zeros((40, 50, 3), np.uint8), "rgb8")
    with pytest.raises(ImageDecodeError, match="above the limit of 1999"):
        image_to_rgb(raw, max_pixels=1999)
    with pytest.raises(ImageDecodeError, match="above the limit of 1999"):
        mask_to_numpy(numpy_to_image(np.zeros((40, 50), np.uint8), "mono8"), max_pixels=1999)


@pytest.mark.parametrize(("width", "height", "says"), [(16384, 16384, "pixels"), (30000, 30000, "per side")])
def test_raw_images_are_refused_by_their_declared_size(width, height, says):
    # The data is a few bytes: the declared size alone is refused, before the data length is looked at.
    msg = Image(width=width, height=height, encoding="rgb8", step=width * 3, data=bytes(12))
    with pytest.raises(ImageDecodeError, match=says):
        image_to_rgb(msg)


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1", "yuv422"])
def test_a_frame_encoding_error_lists_what_a_frame_may_be(encoding):
    msg = numpy_to_image(np.zeros((4, 4), np.float32), "32FC1")
    msg.encoding = encoding
    with pytest.raises(ImageDecodeError) as error:
        image_to_rgb(msg)
    assert str(error.value).endswith("accepted: " + ", ".join(limits.IMAGE_ENCODINGS))


def test_a_mask_encoding_error_lists_what_a_mask_may_be():
    with pytest.raises(ImageDecodeError) as error:
        mask_to_numpy(numpy_to_image(RGB, "rgb8"))
    assert str(error.value).endswith("accepted: " + ", ".join(limits.MASK_ENCODINGS))
