"""Transfer learning on an image folder: the two stages, wired to data, cache and device.

The Keras cats-vs-dogs recipe as a library call: bottleneck features once (cached),
a head trained on them, then an optional whole-network fine-tune on augmented images.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import torch

from artifact.card import ModelCard
from artifact.preprocess import Preprocessor
from export.build.serving import ServingModel, build_serving_model
from export.errors import ExportError
from export.finetune.data import Dataset, augment_transform, augmented_pixels
from export.finetune.features import (
    FeatureCache,
    default_cache_dir,
    extract,
    model_key,
    onnx_backbone,
)
from export.finetune.report import DatasetSummary, FineTuneReport
from export.finetune.train import StageResult, build_head, finetune, set_classifier, train_head
from export.options import TrainOptions
from export.progress import Steps

EVAL_BATCH = 16


# Progress lines fine_tune prints (stage 1, stage 2): the pipeline's step count adds them.
STEPS = 2


def training_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fine_tune(
    model: torch.nn.Module,
    dataset: Dataset,
    card: ModelCard,
    options: TrainOptions,
    steps: Steps,
) -> FineTuneReport:
    """Train ``model`` in place (new head, optionally fine-tuned); returns the report so far
    (the test split is evaluated later, on the exported ONNX file)."""
    device = training_device()
    preprocess = Preprocessor.for_local_files(card)
    serving = build_serving_model(model, card.mean, card.std)

    title = f"stage 1: bottleneck features (ONNX Runtime) + {options.head} head on {device}"
    with steps.step(title) as info, onnx_backbone(serving, card) as backbone:
        started = time.perf_counter()
        cache_root = options.cache_dir or default_cache_dir()
        cache = FeatureCache(cache_root, model_key(model, preprocess))
        every = [s.path for samples in dataset.splits.values() for s in samples]
        vectors, unreadable, computed = extract(
            every, preprocess, cache, options.batch_size, backbone
        )
        dataset.drop_unreadable(unreadable)
        for split, samples in dataset.splits.items():
            if not samples:
                raise ExportError(
                    f"--data {str(dataset.root)!r}: no readable images left in the {split} split "
                    f"({len(unreadable)} unreadable)"
                )
        train_x, train_y = _stack(dataset, "train", vectors)
        head = build_head(options.head, train_x, len(dataset.classes))
        stage1 = train_head(
            head,
            (train_x, train_y),
            _stack(dataset, "val", vectors),
            epochs=options.epochs_head,
            lr=options.lr_head,
            batch_size=options.batch_size,
            seed=options.seed,
        )
        stage1.seconds = time.perf_counter() - started
        info["detail"] = (
            f"{computed} computed, {len(every) - computed - len(unreadable)} from cache, "
            f"{len(unreadable)} unreadable; best val accuracy {stage1.best_val_accuracy:.3f} "
            f"(epoch {stage1.best_epoch})"
        )
    set_classifier(model, head)

    with steps.step(f"stage 2: fine-tuning the whole network, {options.epochs_finetune} epochs"):
        started = time.perf_counter()
        stage2 = StageResult()
        if options.epochs_finetune > 0:
            stage2 = _stage2(serving, dataset, card, preprocess, stage1, options, device)
        stage2.seconds = time.perf_counter() - started
    serving.to("cpu").eval()
    return FineTuneReport(
        dataset=DatasetSummary(
            root=dataset.root,
            classes=dataset.classes,
            images=sum(len(s) for s in dataset.splits.values()),
            counts=dataset.counts(),
            unreadable=dataset.unreadable,
            ignored_files=dataset.ignored_files,
        ),
        device=str(device),
        options={k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        features_computed=computed,
        features_cache=cache.folder,
        stage1=stage1,
        stage2=stage2,
        test_samples=[(s.path, s.label) for s in dataset.splits["test"]],
    )


def _stage2(
    serving: ServingModel,
    dataset: Dataset,
    card: ModelCard,
    preprocess: Preprocessor,
    stage1: StageResult,
    options: TrainOptions,
    device: torch.device,
) -> StageResult:
    transform = augment_transform(card.input_size, card.resize.interpolation)
    train = [
        (functools.partial(augmented_pixels, s.path, transform), s.label)
        for s in dataset.splits["train"]
    ]
    val = dataset.splits["val"]
    val_pixels = np.stack([preprocess(s.path.read_bytes(), s.path.name) for s in val])
    val_labels = torch.tensor([s.label for s in val])

    @torch.inference_mode()
    def evaluate() -> tuple[float, float]:
        logits = torch.cat(
            [
                serving.logits(torch.from_numpy(val_pixels[i : i + EVAL_BATCH]).to(device)).cpu()
                for i in range(0, len(val_pixels), EVAL_BATCH)
            ]
        )
        loss = torch.nn.functional.cross_entropy(logits, val_labels).item()
        return loss, (logits.argmax(dim=1) == val_labels).float().mean().item()

    return finetune(
        serving,
        train,
        evaluate,
        (stage1.best_val_loss, stage1.best_val_accuracy),
        epochs=options.epochs_finetune,
        lr=options.lr_finetune,
        momentum=options.momentum_finetune,
        batch_size=options.batch_size,
        seed=options.seed,
        device=device,
    )


def _stack(
    dataset: Dataset, split: str, vectors: dict[Path, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    samples = dataset.splits[split]
    features = np.stack([vectors[s.path] for s in samples]).astype(np.float32)
    return features, np.array([s.label for s in samples], dtype=np.int64)
