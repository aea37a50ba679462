"""One request context: one deadline per request, fixed once, read by every stage; the ticket
released through it. The real core on the shared exported model, no HTTP."""

from __future__ import annotations

import asyncio
import gc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from artifact.runtime import ModelRuntime
from service import errors
from service.config import slices
from service.core.context import RequestContext
from service.core.drain import DrainSignal
from service.core.inference import InferenceService, Upload
from service.errors import ServiceError
from tests.service.conftest import image_bytes, make_settings

CAT = image_bytes("chelsea.jpg")


def test_the_deadline_is_fixed_once_and_only_shortened() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        context = RequestContext()
        context.shorten(60.0)  # the request's own, longer than the service's: no effect
        before = loop.time()
        deadline = context.deadline(2.0)
        assert before + 2.0 <= deadline <= loop.time() + 2.0 and context.timeout_s == 2.0
        await asyncio.sleep(0.05)
        assert context.deadline(2.0) == deadline  # asked again later: the same instant
        assert context.deadline(30.0) == deadline  # whoever asks, with whatever limit
        shorter = RequestContext()
        shorter.shorten(0.5)
        assert shorter.deadline(2.0) <= loop.time() + 0.5 and shorter.timeout_s == 0.5

    asyncio.run(scenario())


def test_the_core_keeps_the_deadline_a_stage_before_it_fixed(exported_model: Path) -> None:
    """A protocol that fixed the deadline (embeddings, before fetching its URLs) and then spent
    it: the core answers 504 at once instead of starting a fresh deadline of its own, and the
    ticket goes back through the context."""

    leftovers: list[str] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: leftovers.append(context["message"])
        )
        runtime = ModelRuntime(exported_model / "model.onnx", "cpu")
        limits = slices.inference(make_settings(exported_model, request_timeout_s=0.3))
        with ThreadPoolExecutor(1) as pool:
            inference = InferenceService(runtime, limits, DrainSignal(5), pool)
            inference.batcher.start()  # no warm-up: not needed to answer
            context = RequestContext()
            context.ticket = inference.admission.admit()
            inference.deadline(context)  # fixed here, as embed() does before fetching
            await asyncio.sleep(0.4)  # the fetch took longer than the request's time
            started = asyncio.get_running_loop().time()
            with pytest.raises(ServiceError) as late:
                await inference.infer([Upload("cat.jpg", CAT)], context)
            assert late.value.error is errors.TIMEOUT, late.value
            del late  # its traceback holds the core's frames (and what they awaited)
            assert asyncio.get_running_loop().time() - started < 0.25  # not a new 0.3 s
            assert inference.admission.reserved == 0 and context.ticket.released
            fresh = RequestContext()  # and a request on time is answered
            fresh.ticket = inference.admission.admit()
            assert len(await inference.infer([Upload("cat.jpg", CAT)], fresh)) == 1
            await inference.close(timeout_s=5)
            gc.collect()  # where asyncio reports a future whose outcome nobody read
            assert not leftovers, leftovers  # every future's outcome was retrieved

    asyncio.run(scenario())
