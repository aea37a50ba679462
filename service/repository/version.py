"""One model version's life: loading → ready → draining → unloaded, or failed (with why).

A version takes requests only while ``ready``. Every request that routes to it holds a
lease until it has been answered; unloading waits for the leases to end before closing the
batcher, so a request that chose this version a moment before a newer one took over is still
served by it, not refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from artifact.errors import ModelLoadError
from artifact.repository import Signature
from service.core.inference import InferenceService

logger = logging.getLogger(__name__)

State = Literal["loading", "ready", "draining", "unloaded", "failed"]
# How often a draining version checks whether its last request has been answered.
LEASE_POLL_S = 0.02


def first_line(exc: BaseException) -> str:
    """An exception in one line, for a reason shown to clients and in readiness."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


class ModelVersion:
    """A ``<name>/<version>`` the repository knows about, loaded or not."""

    def __init__(self, name: str, version: str, path: Path, signature: Signature | None) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.signature = signature  # the files as they were when last loaded (or tried)
        self.state: State = "unloaded"
        self.reason: str | None = None
        self.inference: InferenceService | None = None
        self.leases = 0  # requests routed here and not answered yet
        self.since = time.time()

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.version

    def _set(self, state: State, reason: str | None = None) -> None:
        self.state, self.reason, self.since = state, reason, time.time()

    def lease(self) -> InferenceService:
        """The version's service, held until the request is answered (unloading waits for
        every lease to be given back with :meth:`give_back`)."""
        assert self.inference is not None, f"{self.name}/{self.version} is not loaded"
        self.leases += 1
        return self.inference

    def give_back(self) -> None:
        """End one request's lease."""
        self.leases -= 1

    async def load(self, build: Callable[[], Awaitable[InferenceService]]) -> bool:
        """Build the service (``build`` loads the session off the event loop), start it and
        wait for its warm-up: only then does it take traffic. False, with the reason, if any
        step fails; the version then stays out of service."""
        self._set("loading")
        logger.info("loading %s/%s from %s", self.name, self.version, self.path)
        inference: InferenceService | None = None
        try:
            inference = await build()
            inference.start()
            await inference.warmed_up()
        except Exception as exc:  # whatever fails (a file, ONNX Runtime at warm-up): not served
            if inference is not None:
                await inference.close(timeout_s=0.0)
            message = first_line(exc)
            if not isinstance(exc, ModelLoadError):  # ours name the file; others may not
                message = f"{self.path}: {type(exc).__name__}: {message}"
            self._set("failed", message)
            logger.error("%s/%s failed to load: %s", self.name, self.version, self.reason)
            return False
        self.inference = inference
        self._set("ready")
        return True

    async def unload(self, reason: str, timeout_s: float) -> None:
        """Stop taking requests, wait (up to ``timeout_s``) for the ones it has, then close."""
        if self.inference is None:
            self._set("unloaded", reason)
            return
        self._set("draining", reason)
        logger.info("draining %s/%s: %s", self.name, self.version, reason)
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout_s
        while self.leases and loop.time() < until:
            await asyncio.sleep(LEASE_POLL_S)
        if self.leases:
            logger.warning(
                "%s/%s: %d requests still waiting after %.1fs; closing",
                self.name, self.version, self.leases, timeout_s,
            )  # fmt: skip
        inference, self.inference = self.inference, None
        await inference.close(timeout_s=max(0.0, until - loop.time()))
        self._set("unloaded", reason)
        logger.info("unloaded %s/%s", self.name, self.version)

    def describe(self) -> dict[str, Any]:
        """Name, version, state (and why), folder, since when."""
        described: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "state": self.state,
            "path": str(self.path),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since)),
        }
        if self.reason:
            described["reason"] = self.reason
        return described
