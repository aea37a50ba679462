"""Where the repository's versions come from: a folder of ``<name>/<version>/`` folders
(``XCEPTION_MODEL_REPOSITORY``), or one model (``XCEPTION_MODEL``) served as a repository
holding one version. Both answer the same three questions — which versions are there, has a
version's files changed, and open one (checked) — so the repository has one load path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from artifact.layout import MODEL_FILE, model_file
from artifact.repository import (
    Signature,
    check_identity,
    scan_repository,
    signature_of,
    verify_version,
)
from artifact.runtime import ModelRuntime

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


@dataclass(frozen=True)
class EngineSettings:
    """How a version's session is opened: the engine slice of the settings (``XCEPTION_DEVICE``,
    ``…_ENGINE``, ``…_ORT_THREADS`` as a count, ``…_ORT_SPINNING``)."""

    device: Literal["auto", "cuda", "cpu"]
    engine: Literal["auto", "onnxruntime", "openvino"]
    intra_op_threads: int
    ort_spinning: bool

    def open(self, path: Path) -> ModelRuntime:
        """The session of the model file at ``path`` (blocking)."""
        return ModelRuntime(
            path, self.device, self.intra_op_threads, self.ort_spinning, engine=self.engine
        )


class FolderSource:
    """``XCEPTION_MODEL_REPOSITORY``: every version the exporter published under a folder,
    each verified (card, SHA-256, the embedded card's identity) before it is served."""

    def __init__(self, root: Path, engine: EngineSettings) -> None:
        self.root = root
        self.engine = engine

    def scan(self) -> Found:
        return scan_repository(self.root)

    def signature(self, folder: Path) -> Signature | None:
        try:
            return signature_of(folder)
        except OSError:  # removed since the scan
            return None

    def open(self, folder: Path) -> ModelRuntime:
        verify_version(folder)
        runtime = self.engine.open(folder / MODEL_FILE)
        check_identity(runtime.card, folder, "the card inside model.onnx")
        return runtime


class SingleModel:
    """``XCEPTION_MODEL``: one folder or ``.onnx`` file, anywhere, under the name and version
    its embedded card gives. It has no published layout to check against, and is read once.

    Its first scan opens the session (that is where the name and version are written); the
    first :meth:`open` takes that session rather than loading the file twice. ``xception-serve``
    scans before it serves, so a model that cannot load is one line and exit 1.
    """

    def __init__(self, path: Path, engine: EngineSettings) -> None:
        self.path = path
        self.engine = engine
        self._found: Found | None = None
        self._opened: ModelRuntime | None = None

    def scan(self) -> Found:
        if self._found is None:
            runtime = self.engine.open(model_file(self.path))
            self._opened = runtime
            self._found = {runtime.card.name: {runtime.card.version: self.path}}
        return self._found

    def signature(self, folder: Path) -> Signature | None:
        return None

    def open(self, folder: Path) -> ModelRuntime:
        runtime, self._opened = self._opened, None  # used once; a reload reads the file again
        return runtime or self.engine.open(model_file(self.path))


def source_for(repository: Path | None, model: Path, engine: EngineSettings) -> ModelSource:
    """The repository folder (``XCEPTION_MODEL_REPOSITORY``) if set, else the single model."""
    if repository is not None:
        return FolderSource(repository, engine)
    return SingleModel(model, engine)
