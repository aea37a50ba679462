"""Peers for ``python -m bench peers``: the same model and preprocessing behind other servers.

Each is the small script an ML engineer would write with that tool (a naive FastAPI app,
LitServe, PyTriton), with the same ONNX Runtime session options and the same preprocessing
(:class:`artifact.preprocess.Preprocessor`), so the comparison is of the serving layer only.
Run one as ``python -m bench.peers.<name> --model DIR --port N``; all of them with
``python -m bench peers`` (:mod:`bench.peers.compare`).
"""
