"""Request parameters every protocol shares, checked one way: the rule, its code, its message."""

from __future__ import annotations

from artifact.results import check_top_k
from service import errors
from service.core.inference import InferenceService
from service.errors import ServiceError


def checked_top_k(k: int, inference: InferenceService) -> int:
    """``k`` (``/classify``'s ``top_k``, v2's ``classification``) if the model has that many
    classes; else 422 ``invalid_parameter``, on every protocol."""
    try:
        return check_top_k(k, inference.card.num_classes)
    except ValueError as exc:
        raise ServiceError(errors.INVALID_PARAMETER, str(exc)) from exc
