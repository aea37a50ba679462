"""The fuzzers' shared seed and live service.

One seed per run, printed in the run's header (``fuzz seed: N``): ``FUZZ_SEED=N`` replays it.
Schemathesis and the Hypothesis strategies both take it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.loadgen import ServiceProcess
from tests.service.conftest import live_service

SEED = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(2**31))


@pytest.fixture(scope="session")
def default_service(exported_model: Path) -> Iterator[ServiceProcess]:
    """``xception-serve`` with the defaults a quick start gets (the CPU chosen explicitly)."""
    with live_service(exported_model, {"device": "cpu"}) as live:
        yield live
