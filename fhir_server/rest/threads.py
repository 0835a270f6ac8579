"""The threads that run blocking work (the engine, a database, a JWKS fetch) for the event loop.

A plain executor rather than `run_in_threadpool`: anyio's capacity limiter and cancellation
scopes cost twice as much per hop, and every FHIR request makes one (docs/performance.md).
Forty threads, anyio's default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_WORKERS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="fhir-request")


async def in_thread(function: Callable[..., T], *args: object) -> T:
    """`function(*args)` in a worker thread, awaited."""
    return await asyncio.get_running_loop().run_in_executor(_WORKERS, function, *args)
