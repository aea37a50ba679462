"""Image bytes → the model's uint8 [H, W, 3] RGB array, following the card's resize policy.

Runs in a thread pool before the batch queue. Every way an upload can be wrong
becomes a :class:`~service.errors.ServiceError` with the right status; the pixel
limit is checked from the header, before any pixel is decoded (decompression bombs).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import (
    EmptyFile,
    ImageTooLarge,
    InvalidImage,
    UnsupportedAspectRatio,
    UnsupportedMedia,
)
from service.model_card import ModelCard, ResizePolicy

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
# File extensions Pillow can open: how folder tools (fine-tuning, calibration, bulk
# features) tell image files from the rest.
IMAGE_SUFFIXES = frozenset(ext.lower() for ext in Image.registered_extensions())
# Pixel limit for local files the export stage reads (training data, calibration sets,
# bulk feature folders): trusted more than uploads (XCEPTION_MAX_PIXELS), but not infinitely.
LOCAL_MAX_PIXELS = 200_000_000
# Longer side ÷ shorter side. The crop policy scales the shorter side to the scale size, so
# the resized image has up to scale² × ratio pixels: this bounds the resize's time and memory
# for any accepted image (a 1×100000 PNG of 471 bytes would otherwise become 333×33,300,000).
DEFAULT_MAX_ASPECT_RATIO = 20.0
LOCAL_MAX_ASPECT_RATIO = 100.0
# Our own max_pixels check runs first; Pillow's global guard is only a second net.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class Preprocessor:
    """Decode + orient + RGB + resize per a model card, with a pixel-count limit."""

    input_size: tuple[int, int]
    scale_size: tuple[int, int]
    mode: str
    resample: Image.Resampling
    max_pixels: int
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO

    @classmethod
    def for_card(
        cls,
        card: ModelCard,
        max_pixels: int,
        max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
    ) -> Preprocessor:
        """The preprocessing the card's weights were trained with."""
        return cls.for_policy(card.input_size, card.resize, max_pixels, max_aspect_ratio)

    @classmethod
    def for_policy(
        cls,
        input_size: tuple[int, int],
        resize: ResizePolicy,
        max_pixels: int,
        max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
    ) -> Preprocessor:
        """Preprocessing for a resize policy (the export stage, before a card exists)."""
        if resize.interpolation not in RESAMPLING:
            raise ValueError(
                f"model card resize.interpolation={resize.interpolation!r} is not supported"
            )
        return cls(
            input_size=input_size,
            scale_size=resize.scale_size(input_size),
            mode=resize.mode,
            resample=RESAMPLING[resize.interpolation],
            max_pixels=max_pixels,
            max_aspect_ratio=max_aspect_ratio,
        )

    def __call__(self, data: bytes, filename: str = "") -> np.ndarray:
        """Bytes of one upload → uint8 [H, W, 3]; raises a ServiceError naming ``filename``."""
        name = filename or "upload"
        if not data:
            raise EmptyFile(f"{name}: the file is empty")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as exc:
            claimed = sniff_format(data)
            if claimed:
                raise InvalidImage(
                    f"{name}: looks like {claimed} but cannot be decoded (corrupt, or a variant "
                    "Pillow does not support); re-encode it as JPEG or PNG"
                ) from exc
            raise UnsupportedMedia(
                f"{name}: not an image format we can read (JPEG, PNG, GIF, WebP, BMP, TIFF…)"
            ) from exc
        except (OSError, ValueError, SyntaxError) as exc:
            raise InvalidImage(f"{name}: cannot decode the image header ({exc})") from exc
        width, height = image.size
        if width * height > self.max_pixels:
            raise ImageTooLarge(
                f"{name}: {width}×{height} = {width * height:,} pixels exceeds the limit of "
                f"{self.max_pixels:,} (XCEPTION_MAX_PIXELS)"
            )
        if max(width, height) > self.max_aspect_ratio * max(1, min(width, height)):
            raise UnsupportedAspectRatio(
                f"{name}: {width}×{height} has an aspect ratio of "
                f"{max(width, height) / max(1, min(width, height)):,.1f}:1; the limit is "
                f"{self.max_aspect_ratio:g}:1 (XCEPTION_MAX_ASPECT_RATIO); crop it first"
            )
        try:
            return self._pixels(image)
        except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
            # Truncated files, broken TIFF strips, bad palettes: decoding failed mid-way.
            raise InvalidImage(f"{name}: the image data cannot be decoded ({exc})") from exc

    def _pixels(self, image: Image.Image) -> np.ndarray:
        if image.format == "JPEG":
            # DCT-domain downscale (1/2, 1/4, 1/8) for big JPEGs, never below what the
            # resize needs: decoding a 12 MP photo for a 333 px target is 10× cheaper.
            image.draft("RGB", self.scale_size[::-1])
        image.seek(0)  # animated GIF/WebP/APNG: the first frame
        image = ImageOps.exif_transpose(image)
        image = to_rgb(image)
        return np.asarray(self._resize(image), dtype=np.uint8)

    def _resize(self, image: Image.Image) -> Image.Image:
        out_h, out_w = self.input_size
        if self.mode == "squash":
            return image.resize((out_w, out_h), self.resample)
        # timm eval transform: shorter side → scale size (the longer side keeps the aspect
        # ratio, truncated like torchvision), then a centre crop.
        width, height = image.size
        target = self.scale_size[0]
        if width <= height:
            new_w, new_h = target, int(target * height / width)
        else:
            new_w, new_h = int(target * width / height), target
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), self.resample)
        left = round((new_w - out_w) / 2.0)
        top = round((new_h - out_h) / 2.0)
        return image.crop((left, top, left + out_w, top + out_h))


# Leading bytes of the formats Pillow reads: tells "a broken image" (400) from "not an
# image at all" (415) when Pillow cannot identify the file.
MAGIC = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
}


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
