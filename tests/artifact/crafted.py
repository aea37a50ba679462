"""Crafted files whose decode costs far more than their pixels (issue 34, class 4), built
byte by byte here so that no test depends on a stored attack file."""

from __future__ import annotations

import io
import struct

from PIL import Image


def progressive_jpeg(side: int, scans: int) -> bytes:
    """A flat grey ``side``×``side`` progressive JPEG of ``scans`` scans: Pillow's own
    file, its last (AC) scan repeated — a few bytes each, every one a pass over all blocks."""
    buffer = io.BytesIO()
    Image.new("L", (side, side), 128).save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    own = data.count(b"\xff\xda")
    last = data.rfind(b"\xff\xda")
    return data[:-2] + data[last:-2] * (scans - own) + b"\xff\xd9"


def tiff_strips(
    width: int,
    length: int,
    strips: int,
    order: str = "<",
    big: bool = False,
    samples: int = 1,
    planar: bool = False,
    rows: int = 1,
    tile: tuple[int, int] | None = None,
) -> bytes:
    """An 8-bit grey uncompressed TIFF (classic or BigTIFF, either byte order) of one row per
    strip that lists ``strips`` strip offsets, all pointing at the same pixel bytes.
    ``samples`` > 1: that many samples per pixel, stored as separate planes if ``planar`` (its
    header only is meant to be read then: the pixel bytes are a grey row's), as must a file
    of ``rows`` > 1 rows per strip or of tiles (``tile``: width, length; ``strips`` is then
    the count of tile offsets)."""
    word, head = ("Q", 8) if big else ("I", 4)
    entry_size = 20 if big else 12
    tags = [(256, width), (257, length), (258, 8), (259, 1), (262, 1), (273, None),
            (277, samples), (278, rows), (279, None), (284, 2 if planar else 1)]  # fmt: skip
    if tile is not None:  # tile width, length, offsets and byte counts instead of strips
        tags = [t for t in tags if t[0] not in (273, 278, 279)]
        tags += [(322, tile[0]), (323, tile[1]), (324, None), (325, None)]
    directory_at = 16 if big else 8
    arrays_at = directory_at + (8 if big else 2) + len(tags) * entry_size + head
    offsets_at, counts_at = arrays_at, arrays_at + 8 * strips
    pixels_at = counts_at + 8 * strips
    entries = b""
    for tag, value in tags:
        if value is None:  # an array of LONG8 (BigTIFF) or LONG values
            array = offsets_at if tag in (273, 324) else counts_at
            kind, count, value = (16 if big else 4), strips, array
        else:
            kind, count = (4, 1)
        inline = struct.pack(order + ("Q" if kind == 16 else "I"), value).ljust(head, b"\0")
        entries += struct.pack(order + "HH" + word, tag, kind, count) + inline
    if big:
        header = (b"II" if order == "<" else b"MM") + struct.pack(order + "HHHQ", 43, 8, 0, 16)
        directory = struct.pack(order + "Q", len(tags)) + entries + struct.pack(order + "Q", 0)
        values = "Q"
    else:
        header = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8)
        directory = struct.pack(order + "H", len(tags)) + entries + struct.pack(order + "I", 0)
        values = "I"
    pad = b"\x00" * (offsets_at - len(header) - len(directory))
    # Each array gets 8 bytes per strip whatever its values' width: the layout stays simple.
    layout = f"{order}{strips}{values}"
    offsets = struct.pack(layout, *[pixels_at] * strips).ljust(8 * strips, b"\0")
    counts = struct.pack(layout, *[width] * strips).ljust(8 * strips, b"\0")
    return header + directory + pad + offsets + counts + bytes([200]) * width
