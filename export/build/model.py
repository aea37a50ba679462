"""Model building: a timm classifier with ImageNet, random or local weights.

``--weights imagenet`` downloads through timm (GitHub release or Hugging Face Hub,
whichever the weights' config names); ``none`` is random init with the real
architecture; anything else is a local state dict, the air-gapped route.
"""

from __future__ import annotations

import difflib
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from export.errors import ExportError

CONNECT_TIMEOUT_S = 5.0
# Per-socket-operation timeout while downloading: a stalled transfer fails instead of hanging.
DOWNLOAD_SOCKET_TIMEOUT_S = 30.0
AIR_GAPPED_HINT = (
    "offline or air-gapped? download the weights file elsewhere and pass it with --weights PATH; "
    "to try the service without real weights: --weights none (random weights, same "
    "architecture; its predictions mean nothing)"
)


def current_arch(arch: str) -> str:
    """timm's current name for a name it has deprecated (``xception`` → ``legacy_xception``),
    so that the card records it and timm prints no deprecation warning; else ``arch``."""
    renamed: str | None = timm.models.get_deprecated_models().get(arch)
    return renamed or arch


def check_arch(arch: str) -> None:
    """Fail with close matches when ``arch`` is not a timm model name (the default,
    ``legacy_xception``, among them for anything that looks like Xception)."""
    if timm.is_model(arch):
        return
    close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
    if "ception" in arch.lower() and "legacy_xception" not in close:
        close = ["legacy_xception", *close]
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    raise ExportError(f"--arch {arch!r} is not a timm model{hint}")


def check_weights(arch: str, weights: str, num_classes: int | None = None) -> None:
    """Fail fast, before any heavy work, on weights that cannot be had.

    ``imagenet``: the class count must match and the download source must be reachable
    (skipped when the file is already cached); a path: the file must exist.
    """
    check_arch(arch)
    if weights == "none":
        return
    if weights != "imagenet":
        if not Path(weights).is_file():
            raise ExportError(
                f"--weights {weights!r}: no such file (expected imagenet, none, or a "
                ".pth/.pt/.safetensors state dict)"
            )
        return
    cfg = _default_pretrained_cfg(arch)
    expected = cfg.get("num_classes")
    if expected and num_classes is not None and num_classes != expected:
        raise ExportError(
            f"--weights imagenet has {expected} classes but {num_classes} labels were given: "
            "the classifier would be untrained; fine-tune with --data DIR"
        )
    host, cached = _pretrained_source(cfg)
    if host is None:
        raise ExportError(f"--weights imagenet: timm has no pretrained weights for {arch}")
    if not cached:
        _check_reachable(host, arch)


def create_model(arch: str, weights: str, num_classes: int | None = None) -> nn.Module:
    """Build ``arch`` in eval mode with ``weights`` = ``imagenet`` | ``none`` | a file path.

    Call :func:`check_weights` first for the fast, friendly failures.
    """
    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    if weights == "imagenet":
        model = _create_pretrained(arch, kwargs)
    elif weights == "none":
        model = timm.create_model(arch, pretrained=False, **kwargs)
    else:
        model = timm.create_model(arch, pretrained=False, **kwargs)
        load_weights_file(model, Path(weights), arch)
    return model.eval()


def load_weights_file(model: nn.Module, path: Path, arch: str) -> None:
    """Load a local ``.pth``/``.pt``/``.safetensors`` state dict, strictly, into ``model``."""
    try:
        # timm's loader unwraps {'state_dict': …}/{'model': …} checkpoints and 'module.' prefixes.
        state_dict = timm.models.load_state_dict(str(path), use_ema=True, weights_only=True)
    except Exception as exc:  # any reader error means "not a state dict we can read"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"--weights {str(path)!r}: cannot read a state dict ({reason})") from exc
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and hasattr(state_dict[k], "shape") and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatches (e.g. {mismatched[0]})")
        raise ExportError(
            f"--weights {str(path)!r} does not fit --arch {arch}: {'; '.join(problems)}"
        )
    model.load_state_dict(state_dict, strict=True)


def _create_pretrained(arch: str, kwargs: dict[str, Any]) -> nn.Module:
    """Download through timm with a socket timeout, so a stalled transfer fails, never hangs."""
    host, _ = _pretrained_source(_default_pretrained_cfg(arch))
    source = host[0] if host else "the model hub"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT_S)
    try:
        return timm.create_model(arch, pretrained=True, **kwargs)
    except Exception as exc:  # network, HTTP and cache errors all end the same way for a user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"--weights imagenet: downloading {arch} weights from {source} failed ({reason}); "
            f"{AIR_GAPPED_HINT}"
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)


def _default_pretrained_cfg(arch: str) -> dict[str, Any]:
    cfg = timm.models.get_pretrained_cfg(arch, allow_unregistered=True)
    return cfg.to_dict() if cfg is not None else {}


def _pretrained_source(cfg: dict[str, Any]) -> tuple[tuple[str, int] | None, bool]:
    """(host, port) timm will download from, and whether the file is already cached."""
    hf_hub_id = cfg.get("hf_hub_id")
    if hf_hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        repo_id = hf_hub_id.split("@")[0]
        cached = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or any(
            isinstance(try_to_load_from_cache(repo_id, name), str)
            for name in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
        )
        return _host_port(constants.ENDPOINT), cached
    url = cfg.get("url")
    if url:
        cache_file = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
        return _host_port(url), cache_file.is_file()
    return None, False


def _host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    return parsed.hostname or "", port


def _check_reachable(host: tuple[str, int], arch: str) -> None:
    try:
        with socket.create_connection(host, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ExportError(
            f"--weights imagenet: cannot reach {host[0]}:{host[1]} to download {arch} weights "
            f"({reason}); {AIR_GAPPED_HINT}"
        ) from exc
