"""The model repository: every version the server knows, which ones serve, and routing.

Its versions come from a :class:`~service.repository.sources.ModelSource`: a folder of
published ``<name>/<version>`` folders (``XCEPTION_MODEL_REPOSITORY``, rescanned every
``XCEPTION_POLL_S`` and on ``POST /v2/repository/...``), or one model (``XCEPTION_MODEL``), a
repository holding one version. A rescan (:meth:`ModelRepository.reconcile`) loads what the
version policy wants and is not loaded — warmed up before it takes traffic — and only once
those are ready drains what the policy no longer wants. A version that fails to load is
reported, remembered until its files change, and never displaces a working one.

Budget on a few cores: every session keeps ONNX Runtime's per-session thread pool sized to
all cores (idle threads sleep; nothing spins), and a lock lets one model run at a time, so
two models never time-slice the same cores. Decoding uses one pool for all models. Memory:
one session per loaded version (the policy's ``latest`` keeps one per model, two for a
moment during a rollout).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from service import errors
from service.core.drain import DrainSignal
from service.core.inference import InferenceService
from service.core.limits import InferenceLimits
from service.core.priority import started_pool
from service.errors import ServiceError
from service.repository.selection import RepositorySettings
from service.repository.sources import Found, ModelSource
from service.repository.version import ModelVersion, first_line

logger = logging.getLogger(__name__)


class ModelRepository:
    """Owns every :class:`ModelVersion`, the shared decode pool and the run lock."""

    def __init__(
        self,
        config: RepositorySettings,
        limits: InferenceLimits,
        drain: DrainSignal,
        source: ModelSource,
    ) -> None:
        """``limits``: every version's inference limits."""
        self.config = config
        self.limits = limits
        self.drain = drain
        self.source = source
        self.policy = config.policy
        self.versions: dict[tuple[str, str], ModelVersion] = {}
        self.held: set[str] = set()  # unloaded on request: scans leave them alone until loaded
        self.found: Found = {}
        self.scanned = False
        self.scan_error: str | None = None  # why the last scan failed (readiness says it)
        # Decode threads at inference's priority, not the event loop's: decoding feeds
        # inference, and at +10 it starved it at ordinary load (bench peers, c=8: 4.45 → 5.42
        # img/s, refusals 13 → 0). Admission bounds the decode work a storm causes.
        self.decode_pool = started_pool(config.decode_workers, "decode")
        self.run_lock = threading.Lock()
        # Scans, sessions and batchers run on this thread: the threads they create inherit its
        # priority, not the (lowered) one of the event loop (service.core.priority).
        self._loader = started_pool(1, "model-loader")
        self._reconciling = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    # -- scanning and loading ------------------------------------------------------------

    async def reconcile(self, load: str | None = None) -> None:
        """Rescan; load what the policy wants, then drain what it no longer wants. ``load``: a
        model loaded on request, served again and its failed versions retried — decided under
        the lock, first come, first served, so control calls take effect in arrival order."""
        async with self._reconciling:
            if load is not None:
                self.held.discard(load)
            self.found = await self._scan()
            self._forget_gone()
            known = {name for name, _ in self.versions} | set(self.found)
            for name in sorted(known if load is None else [load]):
                if name not in self.held:
                    await self._reconcile_model(name, self.found.get(name, {}), load is not None)
            self.scanned = True

    async def _scan(self) -> Found:
        return await asyncio.get_running_loop().run_in_executor(self._loader, self.source.scan)

    def _forget_gone(self) -> None:
        """Drop what is neither on disk nor loaded."""
        for key, entry in list(self.versions.items()):
            on_disk = key[1] in self.found.get(key[0], {})
            if not on_disk and entry.state in ("unloaded", "failed"):
                del self.versions[key]

    async def refresh(self) -> None:
        """Rescan without loading or unloading: new versions are listed, as not loaded."""
        async with self._reconciling:
            self.found = await self._scan()
            self._forget_gone()
            for name, on_disk in self.found.items():
                self._register(name, on_disk, retry=False)

    def _register(self, name: str, on_disk: dict[str, Path], retry: bool) -> None:
        """An entry for every version on disk; failed ones whose files changed may retry."""
        for version, folder in on_disk.items():
            entry = self.versions.setdefault(
                (name, version), ModelVersion(name, version, folder, None)
            )
            changed = self.source.signature(folder) != entry.signature
            if entry.state == "failed" and (changed or retry):
                entry.state = "unloaded"  # its files changed (or a load was asked for): retry

    async def _reconcile_model(self, name: str, on_disk: dict[str, Path], retry: bool) -> None:
        self._register(name, on_disk, retry)
        for version in self._target(name, on_disk):
            entry = self.versions[(name, version)]
            if entry.state == "unloaded":
                entry.signature = self.source.signature(entry.path)
                await entry.load(functools.partial(self._build, entry))
        target = self._target(name, on_disk)  # without the versions that just failed
        if any(self.versions[(name, v)].state != "ready" for v in target):
            return  # keep what serves until every wanted version does
        for entry in self.of(name):
            if entry.version not in target and entry.state in ("ready", "loading"):
                why = (
                    f"superseded (policy {self.policy}: {', '.join(target)})"
                    if entry.version in on_disk
                    else "removed from the repository"
                )
                self._in_background(entry.unload(why, self.config.drain_timeout_s))

    def _target(self, name: str, on_disk: dict[str, Path]) -> list[str]:
        usable = [v for v in on_disk if self.versions[(name, v)].state != "failed"]
        return self.policy.select(usable)

    async def _build(self, entry: ModelVersion) -> InferenceService:
        """Open ``entry`` (checked) and build its service on the loader thread (the event
        loop keeps serving)."""
        loop = asyncio.get_running_loop()
        runtime = await loop.run_in_executor(self._loader, self.source.open, entry.path)
        return await loop.run_in_executor(
            self._loader,
            lambda: InferenceService(
                runtime, self.limits, self.drain, self.decode_pool, self.run_lock
            ),
        )

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- explicit control ----------------------------------------------------------------

    async def load_model(self, name: str) -> list[ModelVersion]:
        """Serve ``name`` again (after an unload) and retry its failed versions; its ready
        versions, or ``model_load_failed`` with each version's reason."""
        await self.reconcile(load=name)
        if name not in self.found:
            raise ServiceError(
                errors.MODEL_NOT_FOUND, f"no model {name!r} in the repository; {self.listing()}"
            )
        ready = [e for e in self.of(name) if e.state == "ready"]
        if not ready:
            reasons = "; ".join(f"version {e.version}: {e.reason}" for e in self.of(name))
            raise ServiceError(
                errors.MODEL_LOAD_FAILED, f"model {name!r} could not be loaded: {reasons}"
            )
        return ready

    async def unload_model(self, name: str) -> None:
        """Stop serving ``name`` (every version drains first) until it is loaded again."""
        if not self.of(name):
            raise ServiceError(errors.MODEL_NOT_FOUND, f"unknown model {name!r}; {self.listing()}")
        async with self._reconciling:
            self.held.add(name)
            await asyncio.gather(
                *(
                    entry.unload("unloaded on request", self.config.drain_timeout_s)
                    for entry in self.of(name)
                    if entry.state in ("ready", "loading")
                )
            )

    # -- routing -------------------------------------------------------------------------

    def of(self, name: str) -> list[ModelVersion]:
        """Every known version of ``name``, newest first."""
        entries = [entry for (n, _), entry in self.versions.items() if n == name]
        return sorted(entries, key=lambda entry: int(entry.version), reverse=True)

    def resolve(self, name: str | None, version: str | None) -> ModelVersion:
        """The ready version a request for ``name`` (default model when None) and ``version``
        (newest ready when None) goes to; 404 listing what is served, or 503 while loading."""
        name = self.default_name() if name is None else name
        entries = self.of(name)
        if version is not None:
            entries = [entry for entry in entries if entry.version == version]
        if ready := [entry for entry in entries if entry.state == "ready"]:
            return ready[0]
        asked = repr(name) if version is None else f"{name!r} version {version!r}"
        if any(entry.state == "loading" for entry in entries) or not self.scanned:
            raise ServiceError(
                errors.NOT_READY, f"model {asked} is loading/warming up; retry shortly"
            )
        state = f" ({entries[0].state})" if entries else ""
        raise ServiceError(
            errors.MODEL_NOT_FOUND, f"model {asked} is not served{state}; {self.listing()}"
        )

    def default_name(self) -> str:
        """``XCEPTION_DEFAULT_MODEL``, else the only model there is."""
        if self.config.default_model is not None:
            return self.config.default_model
        names = sorted({name for name, _ in self.versions if name not in self.held})
        if len(names) == 1:
            return names[0]
        if not names:
            if not self.scanned:
                raise ServiceError(
                    errors.NOT_READY, "the model repository is loading; retry shortly"
                )
            raise ServiceError(errors.MODEL_NOT_FOUND, f"no model is served; {self.listing()}")
        raise ServiceError(
            errors.INVALID_PARAMETER,
            f"{len(names)} models are served ({', '.join(names)}): name one with ?model= "
            "(or set XCEPTION_DEFAULT_MODEL)",
        )

    def listing(self) -> str:
        """What is served, for error messages: ``served: a (versions 2, 1), b (version 1)``."""
        served = []
        for name in sorted({name for name, _ in self.versions}):
            ready = [e.version for e in self.of(name) if e.state == "ready"]
            if ready:
                label = "version" if len(ready) == 1 else "versions"
                served.append(f"{name} ({label} {', '.join(ready)})")
        return "served: " + (", ".join(served) if served else "nothing")

    def readiness(self) -> str | None:
        """None when every model that should be served has a ready version; else why not."""
        if self.drain.draining:
            return "shutting down"
        if not self.scanned:
            if self.scan_error is not None:
                return f"the models cannot be read: {self.scan_error}"
            return "loading the model repository"
        wanted = sorted(name for name in self.found if name not in self.held)
        if not wanted:
            return "no model to serve (the repository has no published version)"
        missing = []
        for name in wanted:
            entries = self.of(name)
            if entries and not any(entry.state == "ready" for entry in entries):
                newest = entries[0]
                why = f" ({newest.reason})" if newest.reason else ""
                missing.append(f"{name} version {newest.version}: {newest.state}{why}")
        return "; ".join(missing) or None

    def require_ready(self) -> None:
        """503 ``not_ready`` saying why, until :meth:`readiness` has nothing to say."""
        if (why := self.readiness()) is not None:
            raise ServiceError(errors.NOT_READY, f"not ready: {why}")

    # -- life ----------------------------------------------------------------------------

    async def watch(self, interval_s: float) -> None:
        """Scan and load now, then rescan every ``interval_s`` (0: never again) until
        cancelled; a failed scan is logged, never fatal."""
        while True:
            try:
                await self.reconcile()
                self.scan_error = None
            except Exception as exc:  # an unreadable folder must not end serving or polling
                self.scan_error = first_line(exc)
                logger.exception("repository scan failed")
            if interval_s <= 0:
                return
            await asyncio.sleep(interval_s)

    async def stop(self) -> None:
        """Drain every loaded version within the drain time, then release the pools."""
        left_s = max(0.0, self.drain.deadline - asyncio.get_running_loop().time())
        timeout_s = min(left_s, self.limits.admission.request_timeout_s)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(
            *(
                entry.unload("shutting down", timeout_s)
                for entry in self.versions.values()
                if entry.inference is not None
            )
        )
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self._loader.shutdown(wait=False, cancel_futures=True)
