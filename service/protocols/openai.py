"""OpenAI-style image embeddings: ``POST /v1/embeddings`` over the model's pooled features.

``{"model", "input": [...], "encoding_format": "float" | "base64"}``; each input a
``data:image/...;base64,...`` URI or bare base64 (or, only when ``XCEPTION_URL_HOSTS`` lists its
host, an http(s) URL). Vectors are L2-normalised, as embedding APIs return them; ``base64``
is the little-endian float32 bytes, as OpenAI's clients decode them. Same batcher, limits and
deadlines as every other endpoint.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import numpy as np
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError, field_validator

from artifact.results import l2_normalize
from service import errors
from service.core.context import RequestContext
from service.core.inference import InferenceService, Upload
from service.core.limits import Admission
from service.errors import ServiceError
from service.protocols.image_sources import SourceError, UrlPolicy, decode_base64, is_url
from service.protocols.uploads import IMAGES_MARK, count_images_first, source_error


class EmbeddingsRequest(BaseModel):
    """Validated with ``context={"admission": Admission}`` (:func:`parse_embeddings`): the
    number of inputs is checked before any of them."""

    model: str
    input: (
        str | Annotated[list[str], Field(min_length=1, json_schema_extra={IMAGES_MARK: True})]
    ) = Field(description="data URIs, base64 strings (or allowed URLs)")
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None  # accepted for compatibility; not used

    _count_first = field_validator("input", mode="before")(count_images_first)


def parse_embeddings(body: bytes, media_type: str, admission: Admission) -> EmbeddingsRequest:
    """The request in ``body``: JSON (as FastAPI reads a body: no Content-Type or a JSON one),
    at most ``admission.max_files`` inputs, counted before any is validated."""
    main = media_type.split(";")[0].strip().lower()
    if main and main != "application/json" and not main.endswith("+json"):
        raise ServiceError(
            errors.UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type {main!r} is not accepted here; send application/json",
        )
    try:
        return EmbeddingsRequest.model_validate_json(body, context={"admission": admission})
    except ValidationError as exc:  # at most max_files inputs' errors: summarised as FastAPI's
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from exc


def model_ref(model: str) -> tuple[str, str | None]:
    """``"name"`` or ``"name/version"`` → (name, version or None: the newest)."""
    name, _, version = model.partition("/")
    return name, version or None


async def embed(
    inference: InferenceService,
    request: EmbeddingsRequest,
    urls: UrlPolicy,
    context: RequestContext,
) -> dict[str, Any]:
    """The OpenAI embeddings response for ``request``, from ``inference`` (the version its
    ``model`` routes to: :func:`model_ref`); ``urls``: the hosts it may fetch images from."""
    card = inference.card
    items = [request.input] if isinstance(request.input, str) else request.input
    inference.accept(len(items), context)  # before fetching or decoding any of them
    # The request's one deadline covers fetching its URLs too.
    deadline = inference.deadline(context)
    uploads = await _load_all(items, urls, deadline)
    rows = await inference.infer(uploads, context)
    data = []
    for index, row in enumerate(rows):
        vector = l2_normalize(row.features).astype(np.float32)
        embedding: Any = (
            base64.b64encode(vector.astype("<f4").tobytes()).decode()
            if request.encoding_format == "base64"
            else vector.tolist()
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": f"{card.name}/{card.version}",
        # Images are not tokens; the fields are there because clients expect them.
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }


async def _load_all(items: list[str], urls: UrlPolicy, deadline: float) -> list[Upload]:
    """Each input's bytes: base64 decoded here, URLs fetched together by ``deadline`` (the
    loop time the request's result is due: image_sources)."""
    names = [f"input[{i}]" for i in range(len(items))]
    try:
        data: dict[int, bytes] = {
            i: decode_base64(value, names[i]) for i, value in enumerate(items) if not is_url(value)
        }
        wanted = [i for i, value in enumerate(items) if is_url(value)]
        if wanted:
            fetched = await urls.fetch_all([(items[i], names[i]) for i in wanted], deadline)
            data.update(zip(wanted, fetched, strict=True))
    except SourceError as exc:
        raise source_error(exc) from exc
    return [Upload(names[i], data[i]) for i in range(len(items))]
