"""The load driver: an asyncio httpx client keeping a fixed number of requests in flight over
keep-alive connections. One event loop in one process costs the 2-core machines this runs on
far less than one thread or process per simulated user, and the same driver runs against the
FHIR server and the floor, so its own cost weighs on both sides of every ratio."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

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
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(
        base_url=base_url, headers=HEADERS, limits=limits, timeout=120
    ) as client:

        async def worker() -> None:
            for call in pending:
                start = time.perf_counter()
                headers = {"authorization": f"Bearer {call.token}"} if call.token else None
                response = await client.request(
                    call.method, call.path, content=call.body, headers=headers
                )
                elapsed = (time.perf_counter() - start) * 1000
                if response.status_code == call.expect:
                    latencies.append(elapsed)
                else:
                    failures.append(f"{call.method} {call.path}: {response.status_code}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Run(seconds, latencies, len(failures), failures[0] if failures else None)


def drive(base_url: str, calls: Sequence[Call], concurrency: int) -> Run:
    """Send every call with `concurrency` in flight; returns when all have been answered."""
    return asyncio.run(_drive(base_url, calls, concurrency))
