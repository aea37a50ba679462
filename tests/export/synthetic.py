"""A small generated image-folder dataset: classes that differ in colour and shape."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

CLASSES = {"circle": (220, 40, 40), "square": (40, 170, 60), "triangle": (50, 70, 220)}
FORMATS = (("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"), ("bmp", "BMP"))


def draw(kind: str, rng: random.Random) -> Image.Image:
    """One image of ``kind``: random size, background tint and position; the class colour."""
    width, height = rng.randint(120, 420), rng.randint(100, 360)
    tint = tuple(rng.randint(200, 250) for _ in range(3))
    image = Image.new("RGB", (width, height), tint)
    canvas = ImageDraw.Draw(image)
    size = rng.randint(min(width, height) // 3, min(width, height) * 2 // 3)
    left, top = rng.randint(0, width - size), rng.randint(0, height - size)
    colour = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in CLASSES[kind])
    box = (left, top, left + size, top + size)
    if kind == "circle":
        canvas.ellipse(box, fill=colour)
    elif kind == "square":
        canvas.rectangle(box, fill=colour)
    else:
        points = [(left + size // 2, top), (left, top + size), (left + size, top + size)]
        canvas.polygon(points, fill=colour)
    return image


def make_dataset(root: Path, per_class: int = 30, seed: int = 0) -> Path:
    """``root/<class>/<i>.<ext>`` for each class, formats cycling through JPEG/PNG/WebP/BMP."""
    rng = random.Random(seed)
    for kind in CLASSES:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            suffix, fmt = FORMATS[i % len(FORMATS)]
            draw(kind, rng).save(folder / f"{i:03d}.{suffix}", format=fmt)
    return root


if __name__ == "__main__":
    import sys

    make_dataset(Path(sys.argv[1]), per_class=int(sys.argv[2]) if len(sys.argv) > 2 else 30)
