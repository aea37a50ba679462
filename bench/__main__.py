"""``python -m bench [overload|soak|bulk|edge|engines|peers|profile] …``: throughput
(:mod:`bench.run`, the default), overload (:mod:`bench.overload`), soak (:mod:`bench.soak`),
bulk inference on Ray (:mod:`bench.bulk`), the request path's own CPU cost (:mod:`bench.edge`),
the same model on ONNX Runtime and OpenVINO (:mod:`bench.engines`), against peer servers
(:mod:`bench.peers.compare`), or where its CPU goes under load (:mod:`bench.profile`)."""

from __future__ import annotations

import sys

from bench import bulk, edge, engines, overload, profile, run, soak
from bench.peers import compare

COMMANDS = {
    "overload": overload.main,
    "soak": soak.main,
    "bulk": bulk.main,
    "edge": edge.main,
    "engines": engines.main,
    "peers": compare.main,
    "profile": profile.main,
}

argv = sys.argv[1:]
if argv and argv[0] in COMMANDS:
    sys.exit(COMMANDS[argv[0]](argv[1:]))
sys.exit(run.main(argv))
