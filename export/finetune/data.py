"""Image-folder datasets: discover classes, split deterministically, load pixels.

Layouts: ``DIR/<class>/*`` (split here: stratified, seeded, default 70/15/15), or
``DIR/train|val|test/<class>/*`` (``validation`` is accepted for ``val``; a missing
val or test split is carved out of train with the same ratios). Class names, sorted,
become the model's labels.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torchvision import transforms

from artifact.images import is_image_file, load_rgb
from artifact.preprocess import LOCAL_MAX_ASPECT_RATIO, LOCAL_MAX_PIXELS
from export.errors import ExportError

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"validation": "val", "valid": "val"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class Dataset:
    """Samples per split, the class names, and what was skipped on the way."""

    root: Path
    classes: list[str]
    splits: dict[str, list[Sample]]
    ignored_files: int = 0
    unreadable: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class per split."""
        out = {}
        for split, samples in self.splits.items():
            per_class = Counter(self.classes[s.label] for s in samples)
            out[split] = {name: per_class.get(name, 0) for name in self.classes}
        return out

    def drop_unreadable(self, paths: set[Path]) -> None:
        """Forget samples whose file could not be decoded (counted in the report)."""
        self.unreadable.extend(sorted(str(p.relative_to(self.root)) for p in paths))
        for split, samples in self.splits.items():
            self.splits[split] = [s for s in samples if s.path not in paths]


def discover(root: Path, ratios: tuple[float, float, float], seed: int) -> Dataset:
    """Find classes and images under ``root`` and split them (see the module docstring)."""
    if not root.is_dir():
        raise ExportError(f"--data {str(root)!r}: no such folder")
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    named = {SPLIT_ALIASES.get(k, k): v for k, v in subdirs.items()}
    if "train" in named:
        classes = _class_names(named["train"])
        found = {s: _images(named[s], classes) for s in SPLITS if s in named}
        ignored = sum(n for _, n in found.values())
        splits = {s: samples for s, (samples, _) in found.items()}
        for missing in (s for s in ("val", "test") if s not in splits):
            fraction = ratios[SPLITS.index(missing)] / (ratios[0] + ratios[SPLITS.index(missing)])
            splits["train"], splits[missing] = _stratified(splits["train"], fraction, seed)
    else:
        classes = _class_names(root)
        samples, ignored = _images(root, classes)
        rest, test = _stratified(samples, ratios[2], seed)
        train, val = _stratified(rest, ratios[1] / (ratios[0] + ratios[1]), seed + 1)
        splits = {"train": train, "val": val, "test": test}
    dataset = Dataset(root, classes, {s: splits[s] for s in SPLITS}, ignored)
    empty = [s for s in SPLITS if not dataset.splits[s]]
    if empty:
        raise ExportError(
            f"--data {str(root)!r}: the {'/'.join(empty)} split would be empty; "
            "add images (at least a few per class) or change --split"
        )
    return dataset


def _class_names(folder: Path) -> list[str]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise ExportError(
            f"--data {str(folder)!r}: needs one sub-folder per class, at least 2 ({found} found)"
        )
    return classes


def _images(folder: Path, classes: list[str]) -> tuple[list[Sample], int]:
    """Image files per class folder (by extension); returns them and the count of other files."""
    samples, ignored = [], 0
    for label, name in enumerate(classes):
        class_dir = folder / name
        files = sorted(p for p in class_dir.rglob("*") if p.is_file()) if class_dir.is_dir() else []
        for path in files:
            if is_image_file(path):
                samples.append(Sample(path, label))
            else:
                ignored += 1
    if not samples:
        raise ExportError(f"--data {str(folder)!r}: no image files in the class folders")
    return samples, ignored


def _stratified(
    samples: list[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Split off ``fraction`` of each class (at least one image when the class has ≥ 2)."""
    rng = random.Random(seed)
    keep, take = [], []
    for label in sorted({s.label for s in samples}):
        members = sorted((s for s in samples if s.label == label), key=lambda s: str(s.path))
        rng.shuffle(members)
        count = round(len(members) * fraction)
        if fraction > 0 and len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        take.extend(members[:count])
        keep.extend(members[count:])
    return keep, take


def augment_transform(input_size: tuple[int, int], interpolation: str) -> transforms.Compose:
    """Stage-2 augmentation on PIL images: random resized crop + horizontal flip.

    The crop keeps at least half the image (scale 0.5–1): small fine-tuning sets lose
    too much with ImageNet's 0.08 lower bound.
    """
    mode = transforms.InterpolationMode(interpolation)
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(input_size, scale=(0.5, 1.0), interpolation=mode),
            transforms.RandomHorizontalFlip(),
        ]
    )


def augmented_pixels(path: Path, transform: transforms.Compose) -> np.ndarray:
    """One augmented uint8 [H, W, 3] view of ``path``."""
    image = load_rgb(path, LOCAL_MAX_PIXELS, LOCAL_MAX_ASPECT_RATIO)
    return np.asarray(transform(image), dtype=np.uint8)
