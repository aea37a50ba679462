"""Image files: which files are images, and one way to decode them to an RGB picture.

Every folder tool (fine-tuning data, int8 calibration, ``xception-features``) lists files
with :func:`list_images`, and every decode — uploads included — goes through
:func:`open_image` (limits checked from the header, before any pixel is decoded) and
:func:`to_rgb`, so the same file gives the same pixels everywhere.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from artifact.decode_cost import DECODE_BLOCK, DeadlineReader, check_structure
from artifact.errors import (
    EmptyImage,
    ImageTooLarge,
    NotAnImage,
    UndecodableImage,
    UnsupportedAspectRatio,
)
from artifact.transparency import is_transparent, on_white

# Values per strip when converting a 16/32-bit grey image (4 MB of float32 at a time).
STRIP_VALUES = 1 << 20
# File extensions Pillow can open: how folder tools tell image files from the rest.
IMAGE_SUFFIXES = frozenset(ext.lower() for ext in Image.registered_extensions())
# Leading bytes of the formats Pillow reads: tells "a broken image" from "not an image at
# all" when Pillow cannot identify the file.
MAGIC = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
}


def media_types(formats: frozenset[str]) -> list[str]:
    """The media types of Pillow format names (``JPEG`` → ``image/jpeg``), sorted: what the
    API's schema declares an upload part may be. A format Pillow gives no type is left out."""
    Image.init()  # Image.MIME is filled as each format's plugin registers
    return sorted({Image.MIME[f] for f in formats if f in Image.MIME})


def is_image_file(path: Path) -> bool:
    """An image by its extension, and not a hidden file (``.DS_Store``, ``._x.jpg``)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive), sorted; ``[]`` when there are none."""
    return sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))


def open_image(
    data: bytes,
    name: str,
    max_pixels: int,
    max_aspect_ratio: float,
    formats: frozenset[str] | None = None,
    deadline: float | None = None,
    abandoned: threading.Event | None = None,
) -> Image.Image:
    """Bytes → a lazily decoded Pillow image whose size is within the limits, of one of
    ``formats`` (Pillow's names; None: any), not decoded by Pillow in pure Python, and of a
    structure that costs no more than its pixels (:mod:`artifact.decode_cost`).

    ``deadline`` (``time.monotonic``) and ``abandoned``: the decode stops with
    :class:`~artifact.decode_cost.DecodeTimedOut` at its next block once either says so.
    Raises an :class:`~artifact.errors.ImageError` naming ``name`` (the limits' setting
    names are the service's, the place a user most often meets them).
    """
    if not data:
        raise EmptyImage(f"{name}: the file is empty")
    check_structure(data, name)
    try:
        image = Image.open(DeadlineReader(data, deadline, abandoned))
    except Image.DecompressionBombError as exc:
        # Pillow's own net (2 × Image.MAX_IMAGE_PIXELS) caught it before our limit could.
        raise ImageTooLarge(
            f"{name}: {exc}; the limit is {max_pixels:,} pixels (XCEPTION_MAX_PIXELS)"
        ) from exc
    except UnidentifiedImageError as exc:
        claimed = sniff_format(data)
        if claimed:
            raise UndecodableImage(
                f"{name}: looks like {claimed} but cannot be decoded (corrupt, or a variant "
                "Pillow does not support); re-encode it as JPEG or PNG"
            ) from exc
        raise NotAnImage(
            f"{name}: not an image format we can read (JPEG, PNG, GIF, WebP, BMP, TIFF…)"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise UndecodableImage(f"{name}: cannot decode the image header ({exc})") from exc
    _check_decoder(image, name, formats)
    image.decodermaxblock = DECODE_BLOCK
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{name}: {width}×{height} = {width * height:,} pixels exceeds the limit of "
            f"{max_pixels:,} (XCEPTION_MAX_PIXELS)"
        )
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > max_aspect_ratio:
        raise UnsupportedAspectRatio(
            f"{name}: {width}×{height} has an aspect ratio of {ratio:,.1f}:1; the limit is "
            f"{max_aspect_ratio:g}:1 (XCEPTION_MAX_ASPECT_RATIO); crop it first"
        )
    return image


def _check_decoder(image: Image.Image, name: str, formats: frozenset[str] | None) -> None:
    """Refuse, from the header, what would be slow or is not wanted to decode."""
    if formats is not None and image.format not in formats:
        raise NotAnImage(
            f"{name}: {image.format} images are not accepted here (XCEPTION_IMAGE_FORMATS: "
            f"{', '.join(sorted(formats))}); re-encode it as JPEG or PNG"
        )
    # Pillow's decoders written in Python (RLE-compressed BMP, QOI, 16-bit SGI, …) take
    # seconds of CPU for one large image, whatever its file size: never worth it here.
    slow = sorted({tile[0] for tile in getattr(image, "tile", []) if tile[0] in Image.DECODERS})
    if slow:
        raise NotAnImage(
            f"{name}: this {image.format} variant ({', '.join(slow)}) decodes in pure Python, "
            "seconds of CPU for one image; re-encode it as PNG or JPEG"
        )


def oriented_rgb(image: Image.Image) -> Image.Image:
    """First frame, EXIF orientation applied, converted to RGB: what every model sees."""
    return to_rgb(oriented(image))


def oriented(image: Image.Image) -> Image.Image:
    """First frame, EXIF orientation applied, as RGB, L for grey images, or as decoded when
    transparent.

    Grey stays one channel and transparency stays unflattened so that callers can resize
    before making it RGB (the same pixels, at a fraction of the memory:
    :func:`artifact.transparency.resized_on_white`). The orientation is applied in place:
    no copy of a picture that needs no turning."""
    image.seek(0)  # animated GIF/WebP/APNG: the first frame
    ImageOps.exif_transpose(image, in_place=True)
    return rgb_grey_or_transparent(image)


def load_rgb(path: Path, max_pixels: int, max_aspect_ratio: float) -> Image.Image:
    """A local file as an oriented RGB picture (fine-tuning's augmentations start here)."""
    image = open_image(path.read_bytes(), path.name, max_pixels, max_aspect_ratio)
    try:
        return oriented_rgb(image)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UndecodableImage(f"{path.name}: the image data cannot be decoded ({exc})") from exc


def sniff_format(data: bytes) -> str | None:
    """The image format ``data`` claims by its magic bytes, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((fmt for magic, fmt in MAGIC.items() if data.startswith(magic)), None)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode → RGB; transparency is composited on white, 16-bit scaled to 8."""
    image = rgb_grey_or_transparent(image)
    if is_transparent(image):
        return on_white(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def rgb_grey_or_transparent(image: Image.Image) -> Image.Image:
    """Any Pillow mode → RGB, L for grey ones (8-bit, 16-bit and float grey), or — when it
    has transparency — itself, to be composited on white (:mod:`artifact.transparency`)."""
    if image.mode in ("RGB", "L") or is_transparent(image):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _to_8bit_gray(image)
    return image.convert("RGB")


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit grey → 8-bit L: 16-bit ranges scale by 1/257 (65535 → 255), floats
    in [0, 1] by 255; NaN is 0, infinities clip.

    In strips of rows, in float32: the decoded image is the only full-size copy beside the
    8-bit result (a float64 whole-image conversion once took ~1 GB for a 36 MP float TIFF)."""
    width, height = image.size
    rows = max(1, STRIP_VALUES // max(1, width))
    strips = [(top, min(height, top + rows)) for top in range(0, height, rows)]

    def strip(top: int, bottom: int) -> np.ndarray:
        return np.asarray(image.crop((0, top, width, bottom)), dtype=np.float32)

    finite = [
        float(values[np.isfinite(values)].max(initial=-np.inf))
        for values in (strip(top, bottom) for top, bottom in strips)
    ]
    largest = max(finite, default=0.0)
    scale = 255.0 if image.mode == "F" and largest <= 1.0 else 1 / 257 if largest > 255 else 1.0
    out = np.empty((height, width), dtype=np.uint8)
    for top, bottom in strips:
        values = np.array(strip(top, bottom))  # a writable copy: Pillow's buffer is read-only
        np.nan_to_num(values, copy=False, nan=0.0, posinf=np.inf, neginf=-np.inf)  # inf: clipped
        values *= scale
        np.rint(values, out=values)
        np.clip(values, 0, 255, out=values)
        out[top:bottom] = values
    return Image.fromarray(out)  # 2-D uint8: L
