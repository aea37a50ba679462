"""Scheduling priority: inference and decoding first, HTTP with what is left when contended.

Under a storm of clients that retry at once after every 503, answering refusals is work
without end: at the same priority, the event loop took a third of a 2-core machine from
ONNX Runtime (docs/reliability.md). Linux schedules threads individually and a thread
may lower its own priority without privileges, so the event loop thread lowers its own
once the model's and the decode threads exist (threads inherit their creator's priority,
and decoding feeds inference: lowered, it starved the engine at ordinary load).
When nothing competes, niceness changes nothing.

Off by default since Retry-After is enforced (:mod:`service.edge.pacing`): storms that no
longer cost the loop much left only the price of lowering it — on Linux's EEVDF scheduler a
niced thread also runs later after waking, and the refusals of clients that honour
Retry-After took a few hundred ms instead of tens (docs/reliability.md).
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger(__name__)


def lower_thread_priority(niceness: int) -> None:
    """Add ``niceness`` to the calling thread's nice value (Linux; elsewhere a no-op)."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + niceness))
    except OSError as exc:  # a sandbox that forbids it: run at the same priority
        logger.warning("could not lower the HTTP thread's priority (%s); continuing", exc)
        return
    logger.info("the HTTP event loop at nice %+d relative to inference and decoding", niceness)


def started_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """A pool whose ``workers`` threads all exist now: created before the event loop lowers
    its priority, they keep inference's (a pool starts its threads lazily otherwise)."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
    started = threading.Barrier(workers)
    for _ in range(workers):
        pool.submit(started.wait)
    return pool
