"""Image files: which files are images, and one way to decode them to an RGB picture.

Every folder tool (fine-tuning data, int8 calibration, ``xception-features``) lists files
with :func:`list_images`, and every decode — uploads included — goes through
:func:`open_image` (limits checked from the header, before any pixel is decoded) and
:func:`to_rgb`, so the same file gives the same pixels everywhere.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from artifact.errors import (
    EmptyImage,
    ImageTooLarge,
    NotAnImage,
    UndecodableImage,
    UnsupportedAspectRatio,
)

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


def is_image_file(path: Path) -> bool:
    """An image by its extension, and not a hidden file (``.DS_Store``, ``._x.jpg``)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive), sorted; ``[]`` when there are none."""
    return sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))


def open_image(data: bytes, name: str, max_pixels: int, max_aspect_ratio: float) -> Image.Image:
    """Bytes → a lazily decoded Pillow image whose size is within the limits.

    Raises an :class:`~artifact.errors.ImageError` naming ``name`` (the limits' setting
    names are the service's, the place a user most often meets them).
    """
    if not data:
        raise EmptyImage(f"{name}: the file is empty")
    try:
        image = Image.open(io.BytesIO(data))
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


def oriented_rgb(image: Image.Image) -> Image.Image:
    """First frame, EXIF orientation applied, converted to RGB: what every model sees."""
    image.seek(0)  # animated GIF/WebP/APNG: the first frame
    return to_rgb(ImageOps.exif_transpose(image))


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
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _to_8bit_gray(image)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit grey → 8-bit L: 16-bit ranges scale by 1/257 (65535 → 255)."""
    values = np.asarray(image).astype(np.float64)
    if image.mode == "F" and values.size and values.max() <= 1.0:
        values = values * 255.0
    elif values.size and values.max() > 255:
        values = values / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))  # 2-D uint8: L
