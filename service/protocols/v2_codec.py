"""The Open Inference Protocol's (KServe v2) request and response bodies, as Triton speaks them.

A request is JSON, optionally followed by raw tensor bytes: the ``Inference-Header-Content-Length``
header says where the JSON ends, and each input with ``parameters.binary_data_size`` takes its
bytes from what follows, in order (little-endian, row-major; a BYTES element is a 4-byte length
then its bytes). Responses mirror it: each output in JSON ``data`` or, when asked for, in binary.
Nothing here knows about the model; :mod:`service.protocols.v2` does the inference.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.parsing import Unparseable, count, json_value, whole
from service.protocols.image_sources import SourceError, decode_base64

HEADER_LENGTH = "inference-header-content-length"
# The datatypes we read and write, and their NumPy types (BYTES: Python bytes objects).
NUMPY_TYPES = {"UINT8": np.uint8, "FP32": np.float32}


class ProtocolError(ValueError):
    """A request the protocol cannot accept: answered 400 with this message."""


class TooManyImages(ProtocolError):
    """An input whose first (batch) dimension is past the request's image limit, found
    from its shape before any element is read."""

    def __init__(self, name: str, count: int) -> None:
        super().__init__(f"input {name!r}: {count:,} images")
        self.count = count


# parameters.timeout: at most a day of µs (XCEPTION_REQUEST_TIMEOUT_S bounds it further).
MAX_TIMEOUT_US = 86_400 * 10**6


def _whole(value: Any, where: str, maximum: int) -> int:
    try:
        return whole(value, where, maximum)
    except Unparseable as exc:
        raise ProtocolError(str(exc)) from exc


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | list[bytes]  # numeric array, or one bytes object per BYTES element


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool
    classification: int = 0  # k > 0: the classification extension's top-k strings


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, Tensor]
    outputs: list[RequestedOutput] = field(default_factory=list)
    binary_outputs: bool = False  # the request-wide default (``binary_data_output``)
    timeout_s: float | None = None  # ``parameters.timeout`` is in microseconds


def parse_request(body: bytes, header_length: str | None, max_batch: int) -> InferRequest:
    """A v2 infer request body (JSON, or JSON + binary section) → :class:`InferRequest`;
    :class:`TooManyImages` when an input's first dimension is past ``max_batch``."""
    size = len(body)
    if header_length is not None:
        try:
            length = count(header_length)
        except Unparseable:
            length = size + 1
        if length > size:
            raise ProtocolError(
                f"Inference-Header-Content-Length {header_length!r} is not a length within the "
                f"{size}-byte body"
            )
        size = length
    try:
        header = json_value(body[:size])
    except Unparseable as exc:
        raise ProtocolError(f"the request header: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise ProtocolError("the request must be a JSON object with an 'inputs' list")
    parameters = _object(header.get("parameters"), "parameters")
    binary = memoryview(body)[size:]
    inputs: dict[str, Tensor] = {}
    for item in header["inputs"]:
        tensor, used = _input(_object(item, "inputs[]"), binary, max_batch)
        binary = binary[used:]
        inputs[tensor.name] = tensor
    if len(binary):
        raise ProtocolError(f"{len(binary)} bytes of binary data are not claimed by any input")
    timeout = parameters.get("timeout")
    if timeout is not None:
        timeout = _whole(timeout, "parameters.timeout (µs)", MAX_TIMEOUT_US)
        if not timeout:
            raise ProtocolError("parameters.timeout must be a positive number of µs")
    request_id = header.get("id")
    return InferRequest(
        id=None if request_id is None else str(request_id),
        inputs=inputs,
        outputs=_outputs(_list(header.get("outputs"))),
        binary_outputs=bool(parameters.get("binary_data_output", False)),
        timeout_s=None if timeout is None else timeout / 1e6,
    )


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProtocolError(f"'outputs' must be a JSON list, got {type(value).__name__}")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _input(item: dict[str, Any], binary: memoryview, max_batch: int) -> tuple[Tensor, int]:
    """One input tensor, and how many bytes of the binary section it used."""
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise ProtocolError("each input needs a string 'name' and 'datatype'")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ProtocolError(f"input {name!r}: 'shape' must be a list of non-negative integers")
    count = math.prod(shape)  # Python ints: no overflow for absurd shapes
    # Before a per-element loop or object is built: a BYTES element is an image (an encoded
    # file), a numeric tensor's first dimension is the batch.
    images = count if datatype == "BYTES" else (shape[0] if shape else 1)
    if images > max_batch:
        raise TooManyImages(name, images)
    size = _object(item.get("parameters"), f"input {name!r} parameters").get("binary_data_size")
    if size is not None:
        size = _whole(size, f"input {name!r}: binary_data_size", len(binary))
        raw = bytes(binary[:size])
        values = _from_binary(name, datatype, raw, count)
    else:
        if "data" not in item:
            raise ProtocolError(f"input {name!r} has neither 'data' nor binary_data_size")
        size = 0
        values = _from_json(name, datatype, item["data"], count)
    return Tensor(name, datatype, tuple(shape), values), size


def _from_binary(name: str, datatype: str, raw: bytes, count: int) -> np.ndarray | list[bytes]:
    if datatype == "BYTES":
        # At most the shape's count (a bounded batch): 4.9 million zero-length elements
        # were read one by one before their number was compared with the shape.
        elements: list[bytes] = []
        offset = 0
        while offset < len(raw) and len(elements) <= count:
            if offset + 4 > len(raw):
                raise ProtocolError(f"input {name!r}: a BYTES element's length is cut off")
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise ProtocolError(f"input {name!r}: a BYTES element is cut off")
            elements.append(raw[offset : offset + length])
            offset += length
        if len(elements) != count or offset < len(raw):
            got = f"{len(elements)}" if offset == len(raw) else f"more than {count}"
            raise ProtocolError(f"input {name!r}: {got} elements for a shape of {count}")
        return elements
    dtype = _numpy_type(name, datatype)
    if len(raw) != count * np.dtype(dtype).itemsize:
        raise ProtocolError(
            f"input {name!r}: {len(raw)} bytes do not hold {count} {datatype} elements"
        )
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)


def _from_json(name: str, datatype: str, data: Any, count: int) -> np.ndarray | list[bytes]:
    if isinstance(data, list) and count and len(data) > count:  # before NumPy walks it
        raise ProtocolError(f"input {name!r}: 'data' has more than {count} elements")
    try:
        flat = np.asarray(data, dtype=object).reshape(-1) if isinstance(data, list) else None
    except ValueError as exc:  # ragged nesting
        raise ProtocolError(f"input {name!r}: 'data' is not a regular (nested) list") from exc
    if flat is None or len(flat) != count:
        got = "not a list" if flat is None else f"{len(flat)} elements"
        raise ProtocolError(f"input {name!r}: 'data' has {got}; the shape needs {count}")
    if datatype == "BYTES":
        return [_decode_base64(name, i, v) for i, v in enumerate(flat)]
    dtype = _numpy_type(name, datatype)
    try:
        values = np.array(flat.tolist(), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"input {name!r}: 'data' must hold numbers") from exc
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None and (
        not np.isfinite(values).all()
        or values.min(initial=0) < info.min
        or values.max(initial=0) > info.max
    ):
        raise ProtocolError(f"input {name!r}: values outside the {datatype} range")
    return values.astype(dtype)


def _decode_base64(name: str, index: int, value: Any) -> bytes:
    """JSON cannot carry raw bytes: BYTES elements in JSON are base64 (or a data: URI)."""
    if not isinstance(value, str):
        raise ProtocolError(f"input {name!r} element {index}: expected a base64 string")
    try:
        return decode_base64(value, f"input {name!r} element {index}")
    except SourceError as exc:
        raise ProtocolError(str(exc)) from exc


def _numpy_type(name: str, datatype: str) -> Any:
    if datatype not in NUMPY_TYPES:
        raise ProtocolError(f"input {name!r}: datatype {datatype!r} is not supported here")
    return NUMPY_TYPES[datatype]


def _outputs(items: list[Any]) -> list[RequestedOutput]:
    """The requested outputs, each at most once (8,000 copies of ``features`` in 176 kB
    asked for a 359 MB answer)."""
    outputs: dict[str, RequestedOutput] = {}
    for item in items:
        output = _output(_object(item, "outputs[]"))
        if output.name in outputs:
            raise ProtocolError(f"output {output.name!r} is requested more than once")
        outputs[output.name] = output
    return list(outputs.values())


def _output(item: dict[str, Any]) -> RequestedOutput:
    name = item.get("name")
    if not isinstance(name, str):
        raise ProtocolError("each requested output needs a string 'name'")
    parameters = _object(item.get("parameters"), f"output {name!r} parameters")
    k = parameters.get("classification", 0)
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ProtocolError(f"output {name!r}: classification {k!r} must be a positive integer")
    return RequestedOutput(name, bool(parameters.get("binary_data", False)), k)


def encode_response(
    header: dict[str, Any], outputs: list[tuple[Tensor, bool]]
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length."""
    described, chunks = [], []
    for tensor, binary in outputs:
        entry: dict[str, Any] = {
            "name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape),
        }  # fmt: skip
        if binary:
            raw = _to_binary(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif tensor.datatype == "BYTES":
            entry["data"] = [v.decode() for v in tensor.values]
        else:
            entry["data"] = np.asarray(tensor.values).reshape(-1).tolist()
        described.append(entry)
    body = json.dumps({**header, "outputs": described}).encode()
    if not chunks:
        return body, None
    return body + b"".join(chunks), len(body)


def _to_binary(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v)) + v for v in tensor.values)
    array = np.asarray(tensor.values)
    return array.astype(array.dtype.newbyteorder("<")).tobytes(order="C")
