"""Transparent pictures onto white: whole, or resized strip by strip.

Every transparent picture a model sees is composited on white. Doing that before the resize
needs an RGB copy of the whole decoded picture beside it (Pillow keeps RGB in 4 bytes per
pixel: a 40 MP RGBA PNG held 320 MB at its peak). :func:`resized_on_white` composites and
resizes one band of output rows at a time instead, from the source rows that band's filter
reads, so the only full-size picture is the decoded one. Pillow's ``resize(box=...)`` reads
filter support from outside the box, which is what makes the bands join without seams: the
pixels equal compositing the whole picture and then resizing it, up to one level of 8-bit
rounding (``tests/artifact/test_preprocess.py`` compares them).
"""

from __future__ import annotations

import math

from PIL import Image

TRANSPARENT_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
# Source values (pixels × rows) composited at a time: ~16 MB of RGBA per band.
BAND_PIXELS = 1 << 22
# Half-width of each Pillow filter, in source pixels at scale 1 (Pillow's own values).
FILTER_SUPPORT = {
    Image.Resampling.NEAREST: 0.5,
    Image.Resampling.BOX: 0.5,
    Image.Resampling.BILINEAR: 1.0,
    Image.Resampling.HAMMING: 1.0,
    Image.Resampling.BICUBIC: 2.0,
    Image.Resampling.LANCZOS: 3.0,
}


def is_transparent(image: Image.Image) -> bool:
    """Whether the picture has an alpha channel or a transparent palette entry."""
    return image.mode in TRANSPARENT_MODES or (image.mode == "P" and "transparency" in image.info)


def on_white(image: Image.Image) -> Image.Image:
    """A transparent picture (any mode :func:`is_transparent` accepts) composited on white.

    Pasted through its own alpha onto an RGB background: the same pixels as Pillow's
    ``alpha_composite`` onto opaque white, with one copy instead of four."""
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba)
    return background


def resized_on_white(
    image: Image.Image, size: tuple[int, int], resample: Image.Resampling
) -> Image.Image:
    """``on_white(image).resize(size, resample)``, without an RGB copy of the whole picture."""
    width, height = image.size
    out_width, out_height = size
    if size == image.size:
        return on_white(image)
    scale = height / out_height
    # Source rows the vertical filter reads beyond a band's own, plus Pillow's rounding.
    margin = math.ceil(FILTER_SUPPORT[resample] * max(scale, 1.0)) + 2
    rows = max(1, int(BAND_PIXELS // max(1, width) / max(scale, 1.0)))
    out = Image.new("RGB", size)
    for first in range(0, out_height, rows):
        last = min(out_height, first + rows)
        top = max(0, math.floor(first * scale) - margin)
        bottom = min(height, math.ceil(last * scale) + margin)
        band = on_white(image.crop((0, top, width, bottom)))
        # The width first, as Pillow's whole-picture resize does (its 8-bit intermediate
        # clips the filter's overshoot, so the other order gives other pixels; Pillow's
        # resize with a box runs the passes the other way), then the band's output rows.
        band = band.resize((out_width, band.height), resample)
        box = (0.0, first * scale - top, float(out_width), last * scale - top)
        out.paste(band.resize((out_width, last - first), resample, box=box), (0, first))
    return out
