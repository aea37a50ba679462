"""The inference service: FastAPI + ONNX Runtime with dynamic batching. Never imports torch.

Entry points: ``service.cli.main`` (``xception-serve``), ``service.app.create_app``.
"""
