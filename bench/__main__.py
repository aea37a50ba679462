"""``python -m bench [overload|soak] …``: throughput (:mod:`bench.run`, the default),
overload (:mod:`bench.overload`) or soak (:mod:`bench.soak`)."""

from __future__ import annotations

import sys

from bench import overload, run, soak

COMMANDS = {"overload": overload.main, "soak": soak.main}

argv = sys.argv[1:]
if argv and argv[0] in COMMANDS:
    sys.exit(COMMANDS[argv[0]](argv[1:]))
sys.exit(run.main(argv))
