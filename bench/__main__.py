"""``python -m bench [overload|soak|bulk|edge] …``: throughput (:mod:`bench.run`, the default),
overload (:mod:`bench.overload`), soak (:mod:`bench.soak`), bulk inference on Ray
(:mod:`bench.bulk`) or the request path's own CPU cost (:mod:`bench.edge`)."""

from __future__ import annotations

import sys

from bench import bulk, edge, overload, run, soak

COMMANDS = {"overload": overload.main, "soak": soak.main, "bulk": bulk.main, "edge": edge.main}

argv = sys.argv[1:]
if argv and argv[0] in COMMANDS:
    sys.exit(COMMANDS[argv[0]](argv[1:]))
sys.exit(run.main(argv))
