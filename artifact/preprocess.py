"""Image bytes → the model's uint8 [H, W, 3] RGB array, following the card's resize policy.

This is timm's eval transform (``transforms_imagenet_eval``) in Pillow, for each crop mode
a timm model can declare — ``crop`` (timm's ``center``), ``squash`` and ``border`` — so the
service feeds the network the pixels its weights were evaluated with
(``tests/artifact/test_fidelity.py`` compares the two). Errors are the plain
:mod:`artifact.errors` exceptions; the service maps them to HTTP answers.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from artifact.card import ModelCard, ResizePolicy
from artifact.errors import UndecodableImage
from artifact.images import open_image, oriented
from artifact.transparency import is_transparent, resized_on_white

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
# Limits for local files (training data, calibration sets, bulk feature folders): trusted
# more than uploads (XCEPTION_MAX_PIXELS), not infinitely; below Pillow's own hard limit
# (2 × Image.MAX_IMAGE_PIXELS ≈ 179 MP), which would refuse first.
LOCAL_MAX_PIXELS = 150_000_000
LOCAL_MAX_ASPECT_RATIO = 100.0
# Longer side ÷ shorter side. The crop policy scales the shorter side to the scale size, so
# the resized image has up to scale² × ratio pixels: this bounds the resize's time and memory
# for any accepted image (a 1×100000 PNG of 471 bytes would otherwise become 333×33,300,000).
DEFAULT_MAX_ASPECT_RATIO = 20.0


@dataclass(frozen=True)
class Preprocessor:
    """Decode + orient + RGB + resize per a model card, with pixel and aspect-ratio limits."""

    input_size: tuple[int, int]
    scale_size: tuple[int, int]
    mode: str
    resample: Image.Resampling
    max_pixels: int
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO
    formats: frozenset[str] | None = None  # Pillow format names accepted (None: any)
    # ``border`` pads with the mean colour, as timm does: normalised, the padding is zero.
    fill: tuple[int, int, int] = (0, 0, 0)

    @classmethod
    def for_card(
        cls,
        card: ModelCard,
        max_pixels: int,
        max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
        formats: frozenset[str] | None = None,
    ) -> Preprocessor:
        """The preprocessing the card's weights were trained with (``formats``: the Pillow
        formats accepted; None: any)."""
        policy = cls.for_policy(
            card.input_size, card.resize, max_pixels, max_aspect_ratio, card.mean
        )
        return policy if formats is None else dataclasses.replace(policy, formats=formats)

    @classmethod
    def for_local_files(cls, card: ModelCard) -> Preprocessor:
        """The card's preprocessing with the limits for trusted local files."""
        return cls.for_card(card, LOCAL_MAX_PIXELS, LOCAL_MAX_ASPECT_RATIO)

    @classmethod
    def for_policy(
        cls,
        input_size: tuple[int, int],
        resize: ResizePolicy,
        max_pixels: int,
        max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
        mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> Preprocessor:
        """Preprocessing for a resize policy (the export stage, before a card exists)."""
        if resize.interpolation not in RESAMPLING:
            raise ValueError(
                f"model card resize.interpolation={resize.interpolation!r} is not supported"
            )
        red, green, blue = (round(255 * v) for v in mean)
        return cls(
            input_size=input_size,
            scale_size=resize.scale_size(input_size),
            mode=resize.mode,
            resample=RESAMPLING[resize.interpolation],
            max_pixels=max_pixels,
            max_aspect_ratio=max_aspect_ratio,
            fill=(red, green, blue),
        )

    def __call__(
        self,
        data: bytes,
        filename: str = "",
        deadline: float | None = None,
        abandoned: threading.Event | None = None,
    ) -> np.ndarray:
        """Bytes of one image → uint8 [H, W, 3]; raises an ImageError naming ``filename``,
        or :class:`~artifact.decode_cost.DecodeTimedOut` once ``deadline``
        (``time.monotonic``) has passed or ``abandoned`` is set."""
        name = filename or "upload"
        image = open_image(
            data, name, self.max_pixels, self.max_aspect_ratio, self.formats, deadline, abandoned
        )
        try:
            return self._pixels(image)
        except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
            # Truncated files, broken TIFF strips, bad palettes: decoding failed mid-way.
            raise UndecodableImage(f"{name}: the image data cannot be decoded ({exc})") from exc

    def _pixels(self, image: Image.Image) -> np.ndarray:
        if image.format == "JPEG":
            # DCT-domain downscale (1/2, 1/4, 1/8) for big JPEGs, never below what the
            # resize needs: decoding a 12 MP photo for a 333 px target is 10× cheaper. The
            # only place our pixels may differ from timm's (which decodes in full).
            image.draft("RGB", self.scale_size[::-1])
        # Grey is resized as L, then made RGB; transparency is flattened band by band.
        picture = self.resize(oriented(image))
        return np.asarray(picture if picture.mode == "RGB" else picture.convert("RGB"))

    def resize(self, image: Image.Image) -> Image.Image:
        """An RGB, grey or transparent picture → the model's H×W, as timm's eval transform
        for this mode."""
        if self.mode == "squash":
            # Each edge to the scale size (aspect ratio not kept), then the centre crop.
            height, width = self.scale_size
            return _centre_crop(self._resized(image, (width, height)), self.input_size)
        if self.mode == "border":
            # The longer edge to the scale size, then crop or pad (mean colour) to H×W.
            resized = self._keep_ratio(image, longest=True)
            return _centre_crop_or_pad(resized, self.input_size, self.fill)
        if self.scale_size[0] == self.scale_size[1]:
            # torchvision's Resize(int): shorter side → scale size, the longer one truncated.
            width, height = image.size
            target = self.scale_size[0]
            if width <= height:
                size = (target, int(target * height / width))
            else:
                size = (int(target * width / height), target)
            image = self._resized(image, size)
        else:
            image = self._keep_ratio(image, longest=False)
        return _centre_crop(image, self.input_size)

    def _keep_ratio(self, image: Image.Image, longest: bool) -> Image.Image:
        """timm's ``ResizeKeepRatio``: the longer (or shorter) edge fits the scale size."""
        width, height = image.size
        ratio_h, ratio_w = height / self.scale_size[0], width / self.scale_size[1]
        ratio = max(ratio_h, ratio_w) if longest else min(ratio_h, ratio_w)
        size = (round(width / ratio), round(height / ratio))
        return self._resized(image, size)

    def _resized(self, image: Image.Image, size: tuple[int, int]) -> Image.Image:
        """Every resize: a transparent picture comes back composited on white (RGB)."""
        if is_transparent(image):
            return resized_on_white(image, size, self.resample)
        return image if size == image.size else image.resize(size, self.resample)


def _centre_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    height, width = size
    top = round((image.height - height) / 2.0)
    left = round((image.width - width) / 2.0)
    return image.crop((left, top, left + width, top + height))


def _centre_crop_or_pad(
    image: Image.Image, size: tuple[int, int], fill: tuple[int, int, int]
) -> Image.Image:
    """timm's ``center_crop_or_pad``: pad the short edges (left/top get the smaller half)."""
    height, width = size
    if width > image.width or height > image.height:
        padded = Image.new("RGB", (max(width, image.width), max(height, image.height)), fill)
        left = (width - image.width) // 2 if width > image.width else 0
        top = (height - image.height) // 2 if height > image.height else 0
        padded.paste(image, (left, top))
        image = padded
    return _centre_crop(image, size)
