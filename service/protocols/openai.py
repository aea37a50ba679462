"""OpenAI-style image embeddings: ``POST /v1/embeddings`` over the model's pooled features.

``{"model", "input": [...], "encoding_format": "float" | "base64"}``; each input a
``data:image/...;base64,...`` URI or bare base64 (or, only when ``XCEPTION_URL_HOSTS`` lists its
host, an http(s) URL). Vectors are L2-normalised, as embedding APIs return them; ``base64``
is the little-endian float32 bytes, as OpenAI's clients decode them. Same batcher, limits and
deadlines as every other endpoint.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from service.errors import ModelNotFound, TooManyFiles
from service.inference import ClientGone, InferenceService, l2_normalize
from service.protocols.image_sources import SourceError, UrlPolicy, resolve
from service.protocols.uploads import Upload, source_error


class EmbeddingsRequest(BaseModel):
    model: str
    input: str | list[str] = Field(description="data URIs, base64 strings (or allowed URLs)")
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None  # accepted for compatibility; not used


async def embed(
    service: InferenceService,
    request: EmbeddingsRequest,
    urls: UrlPolicy,
    client_gone: ClientGone,
    ticket: Any,
) -> dict[str, Any]:
    """The OpenAI embeddings response for ``request``."""
    card = service.card
    if request.model not in (card.name, f"{card.name}/{card.version}"):
        raise ModelNotFound(
            f"model {request.model!r} is not served here; use {card.name!r} "
            f"(or {card.name}/{card.version!r})"
        )
    items = [request.input] if isinstance(request.input, str) else request.input
    if len(items) > service.settings.max_files:  # before fetching or decoding any of them
        raise TooManyFiles(
            f"{len(items)} inputs in one request; the limit is {service.settings.max_files} "
            "(XCEPTION_MAX_FILES)"
        )
    uploads = [
        Upload(f"input[{i}]", await _load(v, f"input[{i}]", urls)) for i, v in enumerate(items)
    ]
    rows = await service.infer(uploads, client_gone, ticket)
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


async def _load(value: str, where: str, urls: UrlPolicy) -> bytes:
    try:
        resolved = resolve(value, where, urls)
        if isinstance(resolved, bytes):
            return resolved
        return await asyncio.to_thread(urls.fetch, resolved, where)
    except SourceError as exc:
        raise source_error(exc) from exc
