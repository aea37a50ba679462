"""The export stage: build or fine-tune a timm classifier and write a self-describing ONNX model.

Heavy (torch, timm, onnx); the service never imports it. Entry point: ``export.cli.main``
(``xception-export``); library entry point: :func:`export.pipeline.export_model`.
"""
