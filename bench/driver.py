"""The load driver: an asyncio aiohttp client keeping a fixed number of requests in flight over
keep-alive connections. One event loop in one process costs the 2-core machines this runs on
far less than one thread or process per simulated user, and the same driver runs against the
FHIR server and the floor. aiohttp rather than httpx: httpx spent 1.0 to 1.3 ms of CPU a request,
twice what the floor's server spends, so that the floor measured the driver; aiohttp spends
0.2 to 0.3 ms (docs/performance.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.measure import percentiles


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes | None = None
    expect: int = 200
    token: str | None = None  # a bearer token, for a server with security on


@dataclass
class Run:
    """What a batch of calls gave: latencies (ms) of the successful ones and the wall time."""

    seconds: float
    latencies_ms: list[float]
    failures: int = 0
    first_failure: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "requests": len(self.latencies_ms) + self.failures,
            "failures": self.failures,
            "first_failure": self.first_failure,
            "seconds": round(self.seconds, 3),
            "throughput_per_s": round(len(self.latencies_ms) / self.seconds, 1),
            "latency_ms": percentiles(self.latencies_ms),
        }


HEADERS = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}


async def _drive(base_url: str, calls: Sequence[Call], concurrency: int) -> Run:
    pending = iter(calls)
    latencies: list[float] = []
    failures: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(
        base_url, headers=HEADERS, connector=connector, timeout=timeout
    ) as session:

        async def worker() -> None:
            for call in pending:
                start = time.perf_counter()
                headers = {"authorization": f"Bearer {call.token}"} if call.token else None
                async with session.request(
                    call.method, call.path, data=call.body, headers=headers
                ) as response:
                    await response.read()
                elapsed = (time.perf_counter() - start) * 1000
                if response.status == call.expect:
                    latencies.append(elapsed)
                else:
                    failures.append(f"{call.method} {call.path}: {response.status}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Run(seconds, latencies, len(failures), failures[0] if failures else None)


def drive(base_url: str, calls: Sequence[Call], concurrency: int) -> Run:
    """Send every call with `concurrency` in flight; returns when all have been answered."""
    return asyncio.run(_drive(base_url, calls, concurrency))
