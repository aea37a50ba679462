"""XCEPTION_HTTP_NICENESS lowers the event loop only: decoding keeps inference's priority."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from service.repository.repository import ModelRepository
from tests.service.conftest import make_settings, wait_ready


def nice_here() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_only_the_event_loop_is_lowered(exported_model: Path) -> None:
    base = nice_here()
    with TestClient(create_app(make_settings(exported_model, http_niceness=7))) as client:
        wait_ready(client)
        repository: ModelRepository = client.app.state.repository  # type: ignore[attr-defined]
        assert client.portal is not None  # the event loop's thread, while the client is open
        assert client.portal.call(_async_nice) == min(19, base + 7)
        decode = {repository.decode_pool.submit(nice_here).result() for _ in range(8)}
        assert decode == {base}  # every decode thread, not only the first
        assert len(repository.decode_pool._threads) == 2  # all started before the lowering


async def _async_nice() -> int:
    return nice_here()
