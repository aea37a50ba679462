"""What the service answers equals what timm computes, for the same weights and images.

Everything else compares the exported model with the graph it was exported from, so an
error in the serving wrapper (a transposed image, a missing /255) would cancel out. Here
the reference is independent: a seeded random-weights timm model, saved to a file and
exported with ``--weights PATH``; for real photos, the service's answers over HTTP
(upload → service preprocessing → ONNX Runtime) against timm's own pipeline
(``create_transform`` from the model's data config → the timm model in torch).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import timm
import torch
from fastapi.testclient import TestClient
from PIL import Image

from export.options import ExportOptions
from export.pipeline import export_model
from service.app import create_app
from tests.service.conftest import files, image_bytes, make_settings, wait_ready

# legacy_xception: mean = std = 0.5, bicubic, crop_pct 0.8975, 299 px. resnet18.tv_in1k:
# ImageNet mean/std, bilinear, crop_pct 0.875, 224 px.
ARCHES = ("legacy_xception", "resnet18.tv_in1k")
MIN_COSINE = 0.9999
# Relative: random weights give near-uniform probabilities (~0.002 each), where an absolute
# bound would pass anything. A transposed image moves them by 5-8 %; ORT vs torch by < 1e-4.
MAX_PROB_REL_DIFF = 1e-3


def photos() -> dict[str, bytes]:
    """Real photos, landscape and portrait, RGB (timm's loader ignores alpha; we do not)."""
    coffee = Image.open(io.BytesIO(image_bytes("coffee.png"))).convert("RGB")
    portrait = io.BytesIO()
    coffee.transpose(Image.Transpose.ROTATE_270).save(portrait, "PNG")
    return {
        "chelsea.jpg": image_bytes("chelsea.jpg"),
        "coffee.png": image_bytes("coffee.png"),
        "coffee-portrait.png": portrait.getvalue(),
    }


def timm_transform(model: torch.nn.Module) -> Callable[[Image.Image], torch.Tensor]:
    """timm's eval transform for ``model``'s data config (PIL image → normalised CHW)."""
    transform: Callable[[Image.Image], torch.Tensor] = timm.data.create_transform(
        **timm.data.resolve_data_config(model=model)
    )
    return transform


class Reference:
    """The timm model and the served copy of its weights."""

    def __init__(self, model: torch.nn.Module, client: TestClient) -> None:
        self.model = model
        self.client = client
        self.transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))

    @torch.inference_mode()
    def expected(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities [C], pooled features [D]) by timm's pipeline."""
        image = Image.open(io.BytesIO(data)).convert("RGB")
        batch = self.transform(image).unsqueeze(0)
        feature_map = self.model.forward_features(batch)  # type: ignore[operator]
        pooled = self.model.forward_head(feature_map, pre_logits=True)  # type: ignore[operator]
        logits = self.model.forward_head(feature_map)  # type: ignore[operator]
        return torch.softmax(logits, dim=-1)[0].numpy(), pooled[0].numpy()


def calibrate_batch_norm(
    model: torch.nn.Module, transform: Callable[[Image.Image], torch.Tensor]
) -> None:
    """Set the BatchNorm statistics from the photos (data-dependent init). A random network
    with identity statistics maps every image to nearly the same features (cosine 0.998 for
    an image and its transpose), so a wrong pixel layout would go unnoticed; calibrated, the
    features tell images apart (cosine 0.98 for the transpose)."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batch
    pixels = [transform(Image.open(io.BytesIO(d)).convert("RGB")) for d in photos().values()]
    batch = torch.stack(pixels)
    with torch.no_grad():
        model.train()(torch.cat([batch, batch.flip(3)]))
    model.eval()


@pytest.fixture(scope="module", params=ARCHES)
def reference(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Reference]:
    arch: str = request.param
    folder = tmp_path_factory.mktemp("reference")
    torch.manual_seed(1234)
    model = timm.create_model(arch, pretrained=False).eval()
    calibrate_batch_norm(model, timm_transform(model))
    weights = folder / "weights.pth"
    torch.save(model.state_dict(), weights)
    out = folder / arch.split(".")[0] / "1"
    export_model(ExportOptions(out=out, arch=arch, weights=str(weights)))
    with TestClient(create_app(make_settings(out, max_batch_size=4))) as client:
        wait_ready(client)
        yield Reference(model, client)


def test_served_features_are_timms(reference: Reference) -> None:
    named = photos()
    response = reference.client.post("/features", files=files(*named.items()))
    assert response.status_code == 200, response.text
    for result, data in zip(response.json()["results"], named.values(), strict=True):
        served = np.array(result["features"])
        _, expected = reference.expected(data)
        cosine = served @ expected / (np.linalg.norm(served) * np.linalg.norm(expected))
        assert cosine >= MIN_COSINE, (result["filename"], cosine)


def test_served_probabilities_are_timms(reference: Reference) -> None:
    named = photos()
    response = reference.client.post("/classify?top_k=5", files=files(*named.items()))
    assert response.status_code == 200, response.text
    for result, data in zip(response.json()["results"], named.values(), strict=True):
        expected, _ = reference.expected(data)
        top = result["predictions"]
        # Scores of the labels served, read from timm's probabilities (robust to near-ties).
        for prediction in top:
            want = expected[prediction["index"]]
            assert abs(prediction["score"] - want) <= MAX_PROB_REL_DIFF * want, prediction
        assert abs(top[0]["score"] - expected.max()) <= MAX_PROB_REL_DIFF * expected.max()
