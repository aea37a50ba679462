"""The two training stages of the transfer-learning recipe.

Stage 1 trains a small head on cached bottleneck features (the backbone frozen);
stage 2 fine-tunes the whole network, head included, on augmented images. Both keep
the checkpoint with the best validation accuracy (ties: lower validation loss).
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from export.build.serving import ServingModel

HEAD_MOMENTUM = 0.9
# Stage 2 clips the gradient norm: the head's standardisation divides by the features'
# spread, which can be tiny (random init), and one outsized step would wreck the backbone.
GRAD_CLIP_NORM = 5.0


def train_mode_frozen_batchnorm(model: nn.Module) -> None:
    """Train mode, except BatchNorm layers keep their running statistics.

    Fine-tuning batches are small (16): their statistics are noisy and would overwrite
    the ones the backbone was trained with. Dropout still trains.
    """
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


class Standardize(nn.Module):
    """Fixed per-feature standardisation with the training set's statistics.

    Bottleneck features of different weights live on very different scales (random
    init: ~1e-4; ImageNet: ~1); standardising makes one head learning rate fit all.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.maximum(std, 1e-12), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def build_head(
    kind: Literal["mlp", "linear"], train_features: np.ndarray, num_classes: int
) -> nn.Sequential:
    """The write-up's 2048→256→128→C MLP (ReLU, dropout 0.5), or a linear layer."""
    dim = train_features.shape[1]
    standardize = Standardize(train_features.mean(axis=0), train_features.std(axis=0))
    if kind == "linear":
        return nn.Sequential(standardize, nn.Linear(dim, num_classes))
    return nn.Sequential(
        standardize,
        nn.Linear(dim, 256), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(256, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, num_classes),
    )  # fmt: skip


def set_classifier(model: nn.Module, head: nn.Module) -> None:
    """Put ``head`` where the timm model keeps its classifier (``fc``, ``head.fc``, …)."""
    path = str(getattr(model, "pretrained_cfg", {}).get("classifier") or "fc")
    *parents, leaf = path.split(".")
    owner = model
    for name in parents:
        owner = getattr(owner, name)
    if not hasattr(owner, leaf):
        raise RuntimeError(f"{type(model).__name__} has no classifier at {path!r}")
    setattr(owner, leaf, head)
    model.num_classes = head[-1].out_features  # type: ignore[index]


@dataclass
class StageResult:
    """Per-epoch history and the chosen (best validation) epoch."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = 0.0
    best_val_loss: float = math.inf
    seconds: float = 0.0

    def consider(self, epoch: int, row: dict[str, float]) -> bool:
        """Record an epoch; True when it is the new best."""
        self.history.append({"epoch": epoch, **row})
        better = row["val_accuracy"] > self.best_val_accuracy or (
            row["val_accuracy"] == self.best_val_accuracy and row["val_loss"] < self.best_val_loss
        )
        if better:
            self.best_epoch = epoch
            self.best_val_accuracy, self.best_val_loss = row["val_accuracy"], row["val_loss"]
        return better

    def as_dict(self) -> dict[str, Any]:
        return {
            "epochs": len(self.history),
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_val_accuracy,
            "best_val_loss": self.best_val_loss,
            "seconds": round(self.seconds, 2),
            "history": self.history,
        }


def _loss_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = nn.functional.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(dim=1) == labels).float().mean().item()


def train_head(
    head: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> StageResult:
    """Stage 1: SGD on cached features; ``head`` ends holding the best-validation weights."""
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = (torch.from_numpy(a) for a in (train[0], train[1].astype(np.int64)))
    x_val, y_val = (torch.from_numpy(a) for a in (val[0], val[1].astype(np.int64)))
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=HEAD_MOMENTUM)
    result, best_state = StageResult(), copy.deepcopy(head.state_dict())
    bar = tqdm(range(1, epochs + 1), desc="stage 1: head", unit="epoch")
    for epoch in bar:
        head.train()
        order = torch.randperm(len(x_train), generator=generator)
        losses, correct = [], 0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            logits = head(x_train[index])
            loss = nn.functional.cross_entropy(logits, y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item() * len(index))
            correct += int((logits.argmax(dim=1) == y_train[index]).sum())
        head.eval()
        with torch.inference_mode():
            val_loss, val_accuracy = _loss_accuracy(head(x_val), y_val)
        row = {
            "train_loss": sum(losses) / len(x_train),
            "train_accuracy": correct / len(x_train),
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
        }
        if result.consider(epoch, row):
            best_state = copy.deepcopy(head.state_dict())
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{val_accuracy:.3f}")
    head.load_state_dict(best_state)
    head.eval()
    return result


def finetune(
    model: ServingModel,
    train: Sequence[tuple[Callable[[], np.ndarray], int]],
    evaluate: Callable[[], tuple[float, float]],
    baseline: tuple[float, float],
    *,
    epochs: int,
    lr: float,
    momentum: float,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> StageResult:
    """Stage 2: the whole network, Nesterov SGD, on freshly augmented views each epoch.

    ``train`` pairs a loader of one augmented uint8 view with its label; ``evaluate``
    returns (val loss, val accuracy) of the model as it stands. ``baseline`` is the
    stage-1 result: the model ends at the best of it and every epoch.
    """
    rng = random.Random(seed)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True)
    result = StageResult(best_val_loss=baseline[0], best_val_accuracy=baseline[1])
    best_state = copy.deepcopy(model.state_dict())
    for epoch in range(1, epochs + 1):
        train_mode_frozen_batchnorm(model)
        order = list(range(len(train)))
        rng.shuffle(order)
        seen, loss_sum, correct, diverged = 0, 0.0, 0, False
        bar = tqdm(total=len(order), desc=f"stage 2: epoch {epoch}/{epochs}", unit="img")
        for start in range(0, len(order), batch_size):
            picked = [train[i] for i in order[start : start + batch_size]]
            images = torch.from_numpy(np.stack([load() for load, _ in picked])).to(device)
            labels = torch.tensor([label for _, label in picked], device=device)
            logits = model.logits(images)
            loss = nn.functional.cross_entropy(logits, labels)
            if not torch.isfinite(loss):
                diverged = True
                break
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
            optimizer.step()
            seen += len(picked)
            loss_sum += loss.item() * len(picked)
            correct += int((logits.argmax(dim=1) == labels).sum())
            bar.update(len(picked))
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        if diverged:
            print(
                f"      stage 2 diverged in epoch {epoch} (loss not finite): stopping; keeping "
                f"the best checkpoint (epoch {result.best_epoch}); try a lower --lr-finetune",
                flush=True,
            )
            break
        model.eval()
        val_loss, val_accuracy = evaluate()
        row = {
            "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
        }
        if result.consider(epoch, row):
            best_state = copy.deepcopy(model.state_dict())
        print(
            f"      stage 2 epoch {epoch}: val loss {val_loss:.3f}, "
            f"val accuracy {val_accuracy:.3f}",
            flush=True,
        )
    model.load_state_dict(best_state)
    model.eval()
    return result
