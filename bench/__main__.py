"""``python -m bench [overload|soak|bulk] …``: throughput (:mod:`bench.run`, the default),
overload (:mod:`bench.overload`), soak (:mod:`bench.soak`) or bulk inference on Ray
(:mod:`bench.bulk`)."""

from __future__ import annotations

import sys

from bench import bulk, overload, run, soak

COMMANDS = {"overload": overload.main, "soak": soak.main, "bulk": bulk.main}

argv = sys.argv[1:]
if argv and argv[0] in COMMANDS:
    sys.exit(COMMANDS[argv[0]](argv[1:]))
sys.exit(run.main(argv))
