"""The width and height a PNG or JPEG declares, read from its header bytes before anything is decoded.

A decompression bomb is small on the wire and huge decoded (an 875 kB PNG can declare 30000 x 30000):
its declared size is refused before the decoder allocates a byte of pixels.
"""

from __future__ import annotations

from typing import Any

from clipseg_ros.engine import limits

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers (baseline, progressive, lossless, arithmetic...): all but DHT (C4), JPG (C8), DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0..7 (and SOI itself).
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD9)])
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9


class ImageHeaderError(ValueError):
    """Data whose format or declared size cannot be read; the text says why."""


def image_format(data: Any) -> str | None:
    """"png" or "jpeg" from the leading bytes (magic numbers, not a name anyone can set), else None."""
    head = bytes(memoryview(data).cast("B")[:8])
    if head == _PNG_SIGNATURE:
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    return None


def declared_size(data: Any) -> tuple[str, int, int]:
    """(format, width, height) as the header declares them; only headers are read, nothing is decoded."""
    view = memoryview(data).cast("B")
    kind = image_format(view)
    if kind == "png":
        return kind, *_png_size(view)
    if kind == "jpeg":
        return kind, *_jpeg_size(view)
    raise ImageHeaderError(
        f"not a {' or '.join(limits.COMPRESSED_FORMATS)} image (leading bytes {bytes(view[:8]).hex(' ')}): "
        f"only these formats are accepted, their size read before decoding"
    )


def check_declared_size(data: Any, max_pixels: int = limits.DEFAULT_MAX_IMAGE_PIXELS) -> tuple[str, int, int]:
    """declared_size, refused (ImageHeaderError) above limits.check_image_size's bounds."""
    kind, width, height = declared_size(data)
    try:
        limits.check_image_size(width, height, max_pixels)
    except ValueError as exc:
        raise ImageHeaderError(f"{kind} header: {exc}; refused before decoding") from exc
    return kind, width, height


def _png_size(view: memoryview) -> tuple[int, int]:
    # signature, then the IHDR chunk first of all: length (13), b"IHDR", width, height (big-endian)
    if len(view) < 24 or bytes(view[12:16]) != b"IHDR":
        raise ImageHeaderError(f"png of {len(view)} bytes has no IHDR header where the format puts it")
    return int.from_bytes(view[16:20], "big"), int.from_bytes(view[20:24], "big")


def _jpeg_size(view: memoryview) -> tuple[int, int]:
    # Segments from SOI on: FF marker [length (2, big-endian, counting itself) payload]; the frame header (SOFn)
    # holds precision (1), height (2), width (2). Application segments (EXIF thumbnails) are skipped whole.
    pos, end = 2, len(view)
    while pos + 1 < end:
        if view[pos] != 0xFF:
            raise ImageHeaderError(f"jpeg segment at byte {pos} does not start with a marker")
        marker = view[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (_JPEG_SOS, _JPEG_EOI):
            break
        if pos + 4 > end:
            break
        length = int.from_bytes(view[pos + 2 : pos + 4], "big")
        if marker in _JPEG_SOF:
            if length < 7 or pos + 9 > end:
                break
            return int.from_bytes(view[pos + 7 : pos + 9], "big"), int.from_bytes(view[pos + 5 : pos + 7], "big")
        if length < 2:
            raise ImageHeaderError(f"jpeg segment at byte {pos} has a length of {length}")
        pos += 2 + length
    raise ImageHeaderError(f"jpeg of {len(view)} bytes has no frame header (SOF) before its image data")
