"""Benchmarks: the running service against the raw ONNX Runtime engine, in one run.

``python -m bench --help``. Results go to ``bench/results/`` as JSON and Markdown.
"""
