"""PNG and JPEG headers read without decoding: an image's size and channels, before a decompression bomb or
a truncated file reaches the decoder."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from mobilepre.errors import MobilepreError

MAX_IMAGE_PIXELS = 50_000_000  # per image, read from the header before decoding (decompression bombs)


@dataclass(frozen=True)
class ImageHeader:
    """An image's size and the channels TensorFlow's decoder will return, read from its header alone."""

    width: int
    height: int
    channels: int  # as TensorFlow's decoder will return them

    @property
    def values(self) -> int:
        return self.width * self.height * self.channels


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Colour type -> channels TensorFlow decodes (palette: RGB, or RGBA when a tRNS chunk is present).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC), which share the range but are not frame headers.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_CHANNELS = {1: 1, 3: 3, 4: 3}  # TensorFlow converts CMYK / YCCK to RGB


def read_header(path: Path) -> ImageHeader:
    """The header of a PNG or JPEG, checked against `MAX_IMAGE_PIXELS` before anything is decoded."""
    try:
        with open(path, "rb") as f:
            start = f.read(8)
            if start == _PNG_SIGNATURE:
                header = _png_header(f, path)
            elif start[:2] == b"\xff\xd8":
                f.seek(2)
                header = _jpeg_header(f, path)
            else:
                raise MobilepreError(f"image {path} is neither a PNG nor a JPEG (by its first bytes): remove or convert it")
    except OSError as e:
        raise MobilepreError(f"cannot read image {path}: {e.strerror or e}") from None
    if header.width == 0 or header.height == 0:
        raise MobilepreError(f"image {path} declares a size of {header.width}x{header.height} pixels: it is corrupt")
    pixels = header.width * header.height
    if pixels > MAX_IMAGE_PIXELS:
        raise MobilepreError(
            f"image {path} is {header.width}x{header.height} pixels ({pixels / 1e6:.1f} megapixels), over the "
            f"{MAX_IMAGE_PIXELS / 1e6:g}-megapixel limit: shrink it or remove it"
        )
    return header


def _png_header(f, path: Path) -> ImageHeader:
    chunk = f.read(25)
    if len(chunk) < 25 or chunk[:8] != b"\x00\x00\x00\x0dIHDR":
        raise MobilepreError(f"image {path} is not a valid PNG (no IHDR header): it is truncated or corrupt")
    width, height, _depth, colour = struct.unpack(">IIBB", chunk[8:18])
    if colour not in _PNG_CHANNELS:
        raise MobilepreError(f"image {path} is not a valid PNG (colour type {colour}): it is corrupt")
    channels = _PNG_CHANNELS[colour]
    if colour == 3 and _png_has_chunk_before_data(f, b"tRNS"):
        channels = 4
    return ImageHeader(width, height, channels)


def _png_has_chunk_before_data(f, name: bytes) -> bool:
    while True:
        head = f.read(8)
        if len(head) < 8 or head[4:] in (b"IDAT", b"IEND"):
            return False
        if head[4:] == name:
            return True
        f.seek(struct.unpack(">I", head[:4])[0] + 4, 1)  # data and CRC


def _jpeg_header(f, path: Path) -> ImageHeader:
    def corrupt(why: str) -> MobilepreError:
        return MobilepreError(f"image {path} is not a valid JPEG ({why}): it is truncated or corrupt")

    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":  # like libjpeg, skip stray bytes between segments
            byte = f.read(1)
        while byte == b"\xff":  # fill bytes
            byte = f.read(1)
        if not byte:
            raise corrupt("it ends before its frame header")
        marker = byte[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # stand-alone markers, no length
            continue
        if marker in (0xD9, 0xDA):
            raise corrupt("no frame header before its image data")
        raw = f.read(2)
        if len(raw) < 2:
            raise corrupt("it ends inside a segment header")
        length = struct.unpack(">H", raw)[0]
        if length < 2:
            raise corrupt(f"a segment has length {length}")
        if marker in _JPEG_SOF:
            body = f.read(6)
            if len(body) < 6:
                raise corrupt("it ends inside its frame header")
            _precision, height, width, components = struct.unpack(">BHHB", body)
            if components not in _JPEG_CHANNELS:
                raise corrupt(f"{components} colour components")
            return ImageHeader(width, height, _JPEG_CHANNELS[components])
        f.seek(length - 2, 1)
