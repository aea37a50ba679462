"""The training loops keep the best-validation weights, not the last ones, in both stages."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import timm
import torch

from export.build.serving import build_serving_model
from export.finetune.train import build_head, finetune, train_head


def noisy_features(
    seed: int,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Two overlapping Gaussian classes, 30 % of the training labels flipped: a large
    learning rate makes validation accuracy go up and down from epoch to epoch."""
    rng = np.random.default_rng(seed)

    def draw(n: int, flip: float) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, n)
        features = rng.normal(size=(n, 16)) + labels[:, None] * 0.8
        noisy = np.where(rng.random(n) < flip, 1 - labels, labels)
        return features.astype(np.float32), noisy.astype(np.int64)

    return draw(200, 0.3), draw(100, 0.0)


def test_head_ends_with_its_best_validation_epoch() -> None:
    train, val = noisy_features(seed=5)
    torch.manual_seed(0)
    head = build_head("linear", train[0], 2)
    result = train_head(head, train, val, epochs=15, lr=2.0, batch_size=16, seed=0)
    last = result.history[-1]
    # The scenario is only a test if the last epoch is not the best one.
    assert result.best_epoch < len(result.history)
    assert (last["val_accuracy"], last["val_loss"]) != (
        result.best_val_accuracy,
        result.best_val_loss,
    )
    with torch.inference_mode():
        logits = head(torch.from_numpy(val[0]))
    labels = torch.from_numpy(val[1])
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
    assert accuracy == pytest.approx(result.best_val_accuracy)
    assert loss == pytest.approx(result.best_val_loss, rel=1e-5)


def tiny_serving_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=2)
    return build_serving_model(model, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def run_stage2(
    model: torch.nn.Module, scores: list[tuple[float, float]], baseline: tuple[float, float]
) -> list[dict[str, torch.Tensor]]:
    """Fine-tune for len(scores) epochs, validation answering ``scores`` in turn; returns
    the weights as they were at each validation."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(8)]
    train = [((lambda image=image: image), i % 2) for i, image in enumerate(images)]
    seen: list[dict[str, torch.Tensor]] = []

    def evaluate() -> tuple[float, float]:
        seen.append(copy.deepcopy(model.state_dict()))
        return scores[len(seen) - 1]

    finetune(
        model,  # type: ignore[arg-type]
        train,
        evaluate,
        baseline,
        epochs=len(scores),
        lr=0.5,
        momentum=0.9,
        batch_size=4,
        seed=0,
        device=torch.device("cpu"),
    )
    return seen


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[name], b[name]) for name in a)


def test_fine_tuning_keeps_the_stage1_weights_when_no_epoch_beats_them() -> None:
    model = tiny_serving_model()
    before = copy.deepcopy(model.state_dict())
    seen = run_stage2(model, [(2.0, 0.4), (1.5, 0.5)], baseline=(0.3, 0.9))
    assert not same_weights(seen[-1], before)  # training did change the weights
    assert same_weights(model.state_dict(), before)


def test_fine_tuning_keeps_its_best_epoch_not_its_last() -> None:
    model = tiny_serving_model()
    seen = run_stage2(model, [(0.5, 0.8), (0.2, 0.95), (0.9, 0.6)], baseline=(1.0, 0.5))
    assert not same_weights(seen[1], seen[2])
    assert same_weights(model.state_dict(), seen[1])
