"""``POST /classify`` and ``POST /features``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from artifact.results import l2_normalize, top_k
from service.policy import INFERENCE_BY_BODY, INFERENCE_BY_QUERY, edge
from service.protocols.openai import embed, model_ref
from service.protocols.parameters import checked_top_k
from service.routes.deps import (
    ContextDep,
    EmbeddingsBodyDep,
    PassageDep,
    QueryServedDep,
    UploadsDep,
    UrlPolicyDep,
)
from service.routes.schemas import (
    EMBEDDINGS_REQUEST_BODY,
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


@router.post("/classify", response_model=ClassifyResponse, openapi_extra=IMAGES_REQUEST_BODY)
@edge(INFERENCE_BY_QUERY)
async def classify(
    context: ContextDep,
    inference: QueryServedDep,
    uploads: UploadsDep,
    k: Annotated[
        int | None,
        Query(alias="top_k", ge=1, description="predictions per image (default: 5, at most C)"),
    ] = None,
) -> ClassifyResponse:
    """Top-k labels for each uploaded image, in upload order, from the model ``?model=``
    and ``?version=`` name (default: the default model's newest version)."""
    k = min(DEFAULT_TOP_K, inference.card.num_classes) if k is None else checked_top_k(k, inference)
    rows = await inference.infer(uploads, context)
    labels = inference.card.labels
    return ClassifyResponse(
        model=ModelRef(name=inference.card.name, version=inference.card.version),
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


@router.post("/features", response_model=FeaturesResponse, openapi_extra=IMAGES_REQUEST_BODY)
@edge(INFERENCE_BY_QUERY)
async def features(
    context: ContextDep,
    inference: QueryServedDep,
    uploads: UploadsDep,
    normalize: Annotated[bool, Query(description="L2-normalise each vector")] = False,
) -> FeaturesResponse:
    """The pooled bottleneck features (2048-d for Xception) of each image, in upload order."""
    rows = await inference.infer(uploads, context)
    return FeaturesResponse(
        model=ModelRef(name=inference.card.name, version=inference.card.version),
        dim=inference.card.num_features,
        results=[
            FeaturesResult(
                filename=upload.filename,
                features=(l2_normalize(vector) if normalize else vector).tolist(),
            )
            for upload, (_, vector) in zip(uploads, rows, strict=True)
        ],
    )


@router.post("/v1/embeddings", responses=answers(502), openapi_extra=EMBEDDINGS_REQUEST_BODY)
@edge(INFERENCE_BY_BODY)
async def embeddings(
    body: EmbeddingsBodyDep, passage: PassageDep, urls: UrlPolicyDep
) -> dict[str, Any]:
    """OpenAI-style image embeddings (L2-normalised features) from the model ``model`` names
    (``name`` or ``name/version``); see service.protocols.openai."""
    inference = passage.reroute(*model_ref(body.model))
    return await embed(inference, body, urls, passage.context)
