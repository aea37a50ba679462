"""``POST /classify`` and ``POST /features``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from artifact.results import l2_normalize, top_k
from service.edge.routing import CLASSIFY, EMBEDDINGS, FEATURES
from service.protocols.openai import EmbeddingsRequest, embed, model_ref
from service.protocols.parameters import checked_top_k
from service.routes.deps import CallerDep, QueryServedDep, SettingsDep, UploadsDep
from service.routes.schemas import (
    IMAGES_REQUEST_BODY,
    ClassifyResponse,
    ClassifyResult,
    FeaturesResponse,
    FeaturesResult,
    ModelRef,
    Prediction,
    answers,
)

router = APIRouter(responses=answers(400, 404, 413, 415, 422, 499, 503, 504))
# Predictions per image when top_k is not given (fewer when the model has fewer classes).
DEFAULT_TOP_K = 5


@router.post(CLASSIFY, response_model=ClassifyResponse, openapi_extra=IMAGES_REQUEST_BODY)
async def classify(
    caller: CallerDep,
    service: QueryServedDep,
    uploads: UploadsDep,
    k: Annotated[
        int | None,
        Query(alias="top_k", ge=1, description="predictions per image (default: 5, at most C)"),
    ] = None,
) -> ClassifyResponse:
    """Top-k labels for each uploaded image, in upload order, from the model ``?model=``
    and ``?version=`` name (default: the default model's newest version)."""
    k = min(DEFAULT_TOP_K, service.card.num_classes) if k is None else checked_top_k(k, service)
    rows = await service.infer(uploads, caller.ticket, caller.gone)
    labels = service.card.labels
    return ClassifyResponse(
        model=ModelRef(name=service.card.name, version=service.card.version),
        results=[
            ClassifyResult(
                filename=upload.filename,
                predictions=[
                    Prediction(label=labels[i], index=i, score=score)
                    for i, score in top_k(probabilities, k)
                ],
            )
            for upload, (probabilities, _) in zip(uploads, rows, strict=True)
        ],
    )


@router.post(FEATURES, response_model=FeaturesResponse, openapi_extra=IMAGES_REQUEST_BODY)
async def features(
    caller: CallerDep,
    service: QueryServedDep,
    uploads: UploadsDep,
    normalize: Annotated[bool, Query(description="L2-normalise each vector")] = False,
) -> FeaturesResponse:
    """The pooled bottleneck features (2048-d for Xception) of each image, in upload order."""
    rows = await service.infer(uploads, caller.ticket, caller.gone)
    return FeaturesResponse(
        model=ModelRef(name=service.card.name, version=service.card.version),
        dim=service.card.num_features,
        results=[
            FeaturesResult(
                filename=upload.filename,
                features=(l2_normalize(vector) if normalize else vector).tolist(),
            )
            for upload, (_, vector) in zip(uploads, rows, strict=True)
        ],
    )


@router.post(EMBEDDINGS, responses=answers(502))
async def embeddings(
    body: EmbeddingsRequest, caller: CallerDep, settings: SettingsDep
) -> dict[str, Any]:
    """OpenAI-style image embeddings (L2-normalised features) from the model ``model`` names
    (``name`` or ``name/version``); see service.protocols.openai."""
    service = caller.passage.reroute(*model_ref(body.model))
    return await embed(service, body, settings, caller.ticket, caller.gone)
