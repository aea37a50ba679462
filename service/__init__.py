"""The inference service: FastAPI + ONNX Runtime with dynamic batching. Never imports torch.

Entry points: ``service.cli.main`` (``xception-serve``), ``service.app.create_app``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("xception-service")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
