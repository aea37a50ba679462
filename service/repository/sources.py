"""Where the repository's versions come from: a folder of ``<name>/<version>/`` folders
(``XCEPTION_MODEL_REPOSITORY``), or one model (``XCEPTION_MODEL``) served as a repository
holding one version. Both answer the same three questions — which versions are there, has a
version's files changed, and open one (checked) — so the repository has one load path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from artifact.layout import MODEL_FILE, model_file
from artifact.repository import (
    Signature,
    check_identity,
    scan_repository,
    signature_of,
    verify_version,
)
from artifact.runtime import ModelRuntime
from service.config import Settings

Found = dict[str, dict[str, Path]]  # {name: {version: folder}}


class ModelSource(Protocol):
    def scan(self) -> Found:
        """Every version there is now (blocking: run it off the event loop)."""
        ...

    def signature(self, folder: Path) -> Signature | None:
        """What changes when a version's files are replaced (None: never re-read)."""
        ...

    def open(self, folder: Path) -> ModelRuntime:
        """The checked, loaded session of a version (blocking; ModelLoadError naming why)."""
        ...


def _runtime(path: Path, settings: Settings) -> ModelRuntime:
    return ModelRuntime(
        path, settings.device, settings.intra_op_threads, settings.ort_spinning,
        engine=settings.engine,
    )  # fmt: skip


class FolderSource:
    """``XCEPTION_MODEL_REPOSITORY``: every version the exporter published under a folder,
    each verified (card, SHA-256, the embedded card's identity) before it is served."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.settings = settings

    def scan(self) -> Found:
        return scan_repository(self.root)

    def signature(self, folder: Path) -> Signature | None:
        try:
            return signature_of(folder)
        except OSError:  # removed since the scan
            return None

    def open(self, folder: Path) -> ModelRuntime:
        verify_version(folder)
        runtime = _runtime(folder / MODEL_FILE, self.settings)
        check_identity(runtime.card, folder, "the card inside model.onnx")
        return runtime


class SingleModel:
    """``XCEPTION_MODEL``: one folder or ``.onnx`` file, anywhere, under the name and version
    its embedded card gives. It has no published layout to check against, and is read once.

    Its first scan opens the session (that is where the name and version are written); the
    first :meth:`open` takes that session rather than loading the file twice. ``xception-serve``
    scans before it serves, so a model that cannot load is one line and exit 1.
    """

    def __init__(self, path: Path, settings: Settings) -> None:
        self.path = path
        self.settings = settings
        self._found: Found | None = None
        self._opened: ModelRuntime | None = None

    def scan(self) -> Found:
        if self._found is None:
            runtime = _runtime(model_file(self.path), self.settings)
            self._opened = runtime
            self._found = {runtime.card.name: {runtime.card.version: self.path}}
        return self._found

    def signature(self, folder: Path) -> Signature | None:
        return None

    def open(self, folder: Path) -> ModelRuntime:
        runtime, self._opened = self._opened, None  # used once; a reload reads the file again
        return runtime or _runtime(model_file(self.path), self.settings)


def source_for(settings: Settings) -> ModelSource:
    """The source ``settings`` name: the repository folder, else the single model."""
    if settings.model_repository is not None:
        return FolderSource(settings.model_repository, settings)
    return SingleModel(settings.model, settings)
