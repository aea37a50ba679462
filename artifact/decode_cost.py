"""What a decode may cost beyond its pixels: checked from the header, and held to a deadline.

The pixel limit bounds how many pixels a decode makes, not how long it takes. Two header
fields multiply the work without adding a pixel, so they are capped before Pillow parses
the file (:func:`check_structure`):

- a progressive JPEG's *scans*: each one walks every block of the image again (on an Intel
  Xeon with AMX, 18 ms per scan at 6000×6000; 2,000 crafted scans in 259 kB took 36 s);
- a TIFF's *strip or tile offsets*: Pillow builds one tile per offset inside
  ``Image.open``, so 1,000,000 offsets for a 1×2 picture took 3.9 s and +343 MB before any
  limit could be read.

What is left — a decode that is slow anyway — is held to the request's deadline by
:class:`DeadlineReader`: Pillow feeds its decoders from the file in blocks, and the reader
refuses the next block once the deadline has passed or the request is abandoned, so the
worker thread stops there instead of finishing a picture nobody will receive.
"""

from __future__ import annotations

import io
import math
import struct
import threading
import time

from artifact.errors import ImageTooComplex

# libjpeg's standard progressive script has 10 scans for colour, 6 for grey; encoders that
# optimise their scans (mozjpeg) stay under 20. 64 keeps every real file and bounds the
# decode at 64 passes over the pixels (~1.3 s at the 40 MP default pixel limit here).
MAX_JPEG_SCANS = 64
JPEG_SOI = b"\xff\xd8\xff"
# Entropy-coded data stuffs every 0xFF with 0x00, so this pair only occurs as a marker (or
# inside an embedded thumbnail's JPEG, whose scans are then counted too: an upper bound).
JPEG_SOS = b"\xff\xda"
# Pillow feeds decoders blocks of this many bytes (its default is 64 kB): the deadline is
# checked between two blocks, so a smaller block stops a runaway decode sooner — at no cost
# measured (a 28 MB 6000×4000 JPEG: 0.42 s in 4 kB blocks, 0.47 s in 64 kB ones).
DECODE_BLOCK = 4096

# TIFF tags read from the first directory (the one Pillow decodes).
_WIDTH, _LENGTH, _SAMPLES, _ROWS_PER_STRIP, _PLANAR = 256, 257, 277, 278, 284
_STRIP_OFFSETS, _TILE_WIDTH, _TILE_LENGTH, _TILE_OFFSETS = 273, 322, 323, 324
_TIFF_VALUE_SIZES = {1: 1, 3: 2, 4: 4, 16: 8}  # BYTE, SHORT, LONG, LONG8 (BigTIFF)


class DecodeTimedOut(Exception):
    """The request's deadline passed (or it was abandoned) while its image was decoding."""


class DeadlineReader(io.BytesIO):
    """The image's bytes, refused once ``deadline`` (``time.monotonic``) has passed or
    ``abandoned`` is set: the decoder asking for its next block then raises
    :class:`DecodeTimedOut`."""

    def __init__(
        self, data: bytes, deadline: float | None, abandoned: threading.Event | None
    ) -> None:
        super().__init__(data)
        self._deadline = deadline
        self._abandoned = abandoned

    def read(self, size: int | None = -1, /) -> bytes:
        if self._abandoned is not None and self._abandoned.is_set():
            raise DecodeTimedOut("the request was abandoned while its image was decoding")
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise DecodeTimedOut("the request's deadline passed while its image was decoding")
        return super().read(size)


def check_structure(data: bytes, name: str) -> None:
    """Refuse a JPEG with more scans than :data:`MAX_JPEG_SCANS`, or a TIFF whose first
    directory lists more strips or tiles than its size needs; anything else passes (Pillow
    then judges the file)."""
    if data.startswith(JPEG_SOI):
        scans = data.count(JPEG_SOS)
        if scans > MAX_JPEG_SCANS:
            raise ImageTooComplex(
                f"{name}: this JPEG has {scans:,} scans; at most {MAX_JPEG_SCANS} are decoded "
                "(each one costs a pass over every pixel); re-encode it as baseline JPEG"
            )
    elif data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        _check_tiff(data, name)


def _check_tiff(data: bytes, name: str) -> None:
    tags = _first_directory(data)
    if tags is None:
        return  # not parseable here: Pillow refuses it with its own reason
    width, length = tags.get(_WIDTH, (0, 1))[1], tags.get(_LENGTH, (0, 1))[1]
    planes = tags.get(_SAMPLES, (1, 1))[1] if tags.get(_PLANAR, (1, 1))[1] == 2 else 1
    if _TILE_OFFSETS in tags:
        tile_w, tile_l = tags.get(_TILE_WIDTH, (1, 0))[1], tags.get(_TILE_LENGTH, (1, 0))[1]
        needed = _blocks(width, tile_w) * _blocks(length, tile_l) * max(1, planes)
        count, what = tags[_TILE_OFFSETS][0], "tiles"
    elif _STRIP_OFFSETS in tags:
        rows = tags.get(_ROWS_PER_STRIP, (1, length))[1] or length
        needed = _blocks(length, rows) * max(1, planes)
        count, what = tags[_STRIP_OFFSETS][0], "strips"
    else:
        return
    if count > needed:
        raise ImageTooComplex(
            f"{name}: this {width}×{length} TIFF lists {count:,} {what} where its size needs "
            f"{needed:,}; re-encode it"
        )


def _blocks(size: int, block: int) -> int:
    """How many blocks of ``block`` cover ``size`` (a zero block: one block)."""
    return max(1, math.ceil(size / block)) if block > 0 else 1


def _first_directory(data: bytes) -> dict[int, tuple[int, int]] | None:
    """The first IFD's tags as ``{tag: (count, first value)}`` (values only for inline
    integer types), or None when the header cannot be read."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    try:
        if big:  # BigTIFF: 8-byte offsets and counts, 20-byte entries
            (offset,) = struct.unpack_from(order + "Q", data, 8)
            (entries,) = struct.unpack_from(order + "Q", data, offset)
            start, size, layout = offset + 8, 20, order + "HHQ8s"
        else:
            (offset,) = struct.unpack_from(order + "I", data, 4)
            (entries,) = struct.unpack_from(order + "H", data, offset)
            start, size, layout = offset + 2, 12, order + "HHI4s"
        tags: dict[int, tuple[int, int]] = {}
        for index in range(min(entries, 4096)):  # a directory of more is refused by Pillow
            tag, kind, count, value = struct.unpack_from(layout, data, start + index * size)
            width = _TIFF_VALUE_SIZES.get(kind, 0)
            first = 0
            if width and width * count <= len(value):
                fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
                (first,) = struct.unpack_from(order + fmt, value)
            tags[tag] = (count, first)
        return tags
    except struct.error:
        return None
