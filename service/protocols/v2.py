"""The Open Inference Protocol (KServe v2) on our model: metadata, and infer on the batcher.

Inputs, one of: ``image`` UINT8 [N, H, W, 3] (pixels already at the card's input size: exactly
the ONNX input) or ``image_bytes`` BYTES [N] (encoded files, decoded and preprocessed like an
upload to ``/classify``). Outputs: ``probabilities`` FP32 [N, C] and ``features`` FP32 [N, D],
or, with the classification extension, BYTES [N, k] of ``"score:index:label"``. Requests of
every protocol share the same batcher, limits and deadlines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from artifact.card import INPUT_NAME, OUTPUT_NAMES, ModelCard
from artifact.results import top_k
from service import errors
from service.core.batcher import ImageOutputs
from service.core.context import RequestContext
from service.core.inference import InferenceService, Upload
from service.core.limits import Admission
from service.errors import ServiceError
from service.protocols.parameters import checked_top_k
from service.protocols.v2_codec import (
    InferRequest,
    ProtocolError,
    Tensor,
    TooManyImages,
    encode_response,
    parse_request,
)

BYTES_INPUT = "image_bytes"
PLATFORM = "onnx_onnxv1"


def model_metadata(card: ModelCard, versions: list[str], engine: dict[str, Any]) -> dict[str, Any]:
    """``GET /v2/models/{name}``: the inputs and outputs, with -1 for the batch axis, the
    model's ``versions`` ready to serve, and (beyond the protocol's fields, which clients
    ignore) the ``engine`` that runs it and how it was chosen."""
    height, width = card.input_size
    return {
        "name": card.name,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": [
            {"name": INPUT_NAME, "datatype": "UINT8", "shape": [-1, height, width, 3]},
            {"name": BYTES_INPUT, "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [
            {"name": OUTPUT_NAMES[0], "datatype": "FP32", "shape": [-1, card.num_classes]},
            {"name": OUTPUT_NAMES[1], "datatype": "FP32", "shape": [-1, card.num_features]},
        ],
        "engine": engine,
    }


@dataclass(frozen=True)
class InferReply:
    """A v2 infer response: its body, and the JSON header's length when outputs are binary
    (the ``Inference-Header-Content-Length``)."""

    content: bytes
    header_length: int | None


def parse(body: bytes, header_length: str | None, admission: Admission) -> InferRequest:
    """The infer request in ``body`` (``header_length``: its
    ``Inference-Header-Content-Length``), or 400 ``invalid_tensor`` saying what is wrong
    (413 past ``admission``'s image limit, read from the shapes before any element)."""
    try:
        return parse_request(body, header_length, admission.max_files)
    except TooManyImages as exc:
        raise admission.too_many_files(exc.count) from exc
    except ProtocolError as exc:
        raise _invalid(str(exc)) from exc


async def infer(
    inference: InferenceService, request: InferRequest, context: RequestContext
) -> InferReply:
    """Run a parsed v2 infer ``request`` on ``inference``."""
    context.shorten(request.timeout_s)  # parameters.timeout, if tighter than the service's
    card = inference.card
    wanted = _requested(request, inference)
    if set(request.inputs) == {INPUT_NAME}:
        images = _pixels(request.inputs[INPUT_NAME], card)
        rows = await inference.infer_pixels(images, context)
    elif set(request.inputs) == {BYTES_INPUT}:
        tensor = request.inputs[BYTES_INPUT]
        if tensor.datatype != "BYTES" or len(tensor.shape) != 1 or not tensor.shape[0]:
            raise _invalid(f"input {BYTES_INPUT!r} must be BYTES of shape [N], N ≥ 1")
        uploads = [Upload(f"{BYTES_INPUT}[{i}]", data) for i, data in enumerate(tensor.values)]
        rows = await inference.infer(uploads, context)
    else:
        raise _invalid(
            f"inputs {sorted(request.inputs)}: send exactly one of {INPUT_NAME!r} (UINT8 "
            f"[N, H, W, 3]) or {BYTES_INPUT!r} (BYTES [N])"
        )
    header: dict[str, Any] = {"model_name": card.name, "model_version": card.version}
    if request.id is not None:
        header["id"] = request.id
    content, length = encode_response(
        header, [(_output(name, k, rows, card), b) for name, k, b in wanted]
    )
    return InferReply(content, length)


def _invalid(message: str) -> ServiceError:
    return ServiceError(errors.INVALID_TENSOR, message)


def _requested(request: InferRequest, inference: InferenceService) -> list[tuple[str, int, bool]]:
    """(output name, classification k, binary) for each output to return."""
    if not request.outputs:
        return [(name, 0, request.binary_outputs) for name in OUTPUT_NAMES]
    wanted = []
    for output in request.outputs:
        if output.name not in OUTPUT_NAMES:
            raise _invalid(f"unknown output {output.name!r}; outputs: {list(OUTPUT_NAMES)}")
        if output.classification and output.name != OUTPUT_NAMES[0]:
            raise _invalid(f"classification applies to {OUTPUT_NAMES[0]!r} only")
        if output.classification:  # the same rule and answer as /classify's top_k
            checked_top_k(output.classification, inference)
        wanted.append((output.name, output.classification, output.binary))
    return wanted


def _pixels(tensor: Tensor, card: ModelCard) -> list[np.ndarray]:
    height, width = card.input_size
    shape = tensor.shape
    if tensor.datatype != "UINT8" or shape[1:] != (height, width, 3) or not shape[0]:
        raise _invalid(
            f"input {INPUT_NAME!r} must be UINT8 [N, {height}, {width}, 3] with N ≥ 1 (pixels "
            f"resized as the model card says), got {tensor.datatype} {list(shape)}"
        )
    array = np.asarray(tensor.values).reshape(tensor.shape)
    return list(array)


def _output(name: str, k: int, rows: list[ImageOutputs], card: ModelCard) -> Tensor:
    if name == OUTPUT_NAMES[1]:
        features = np.stack([r.features for r in rows]).astype(np.float32)
        return Tensor(name, "FP32", features.shape, features)
    probabilities = np.stack([r.probabilities for r in rows]).astype(np.float32)
    if not k:
        return Tensor(name, "FP32", probabilities.shape, probabilities)
    # Triton's classification extension: "score:index:label", best first (as /classify).
    strings = [
        f"{score:f}:{index}:{card.labels[index]}".encode()
        for row in probabilities
        for index, score in top_k(row, k)
    ]
    return Tensor(name, "BYTES", (len(rows), k), strings)
