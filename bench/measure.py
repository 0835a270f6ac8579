"""What every benchmark shares: percentiles, free ports, and server processes started the way
users start them (`python -m fhir_server serve`, uvicorn for the floor), so that a figure
includes the real HTTP stack."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select

from fhir_server.engine.versioning import now
from fhir_server.outbox import due, outbox
from fhir_server.search.backlog import WAITING

RESULTS = Path(__file__).parent / "results"


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50": round(cut[49], 3),
        "p95": round(cut[94], 3),
        "p99": round(cut[98], 3),
        "mean": round(statistics.fmean(ordered), 3),
        "n": len(ordered),
    }


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_process(
    command: list[str], ready_path: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """Start an HTTP server process whose command takes `{port}`, and wait until `ready_path`
    answers 200; returns the process and its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [part.format(port=port) for part in command],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"{command[2]} exited with {process.returncode}")
        try:
            if httpx.get(f"{base}{ready_path}", timeout=5).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command[2]} did not start")


def start_http(
    database_url: str, security: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """The FHIR server, one worker process, on an existing database; its deadline sweeps are
    off (the generated CPTS has late tasks: a sweep would run beside the measured requests).
    Security is off unless `security` gives its settings: the scenarios measure the FHIR work
    against its floor, and `bench.security_overhead` measures what security adds to it."""
    return start_process(
        [sys.executable, "-m", "fhir_server", "serve", "--port", "{port}"],
        "/metadata",
        {
            "DATABASE_URL": database_url,
            "FHIR_MIGRATE_ON_START": "false",
            "FHIR_DEADLINE_SWEEP_SECONDS": "0",
            "FHIR_SECURITY_ENABLED": "false",
            **(security or {}),
        },
    )


def settle(database_url: str, timeout: float = 600) -> None:
    """Wait until the started servers have done their background work: the outbox's due
    events (those an earlier scenario left, `$apply` runs with its consumers off) and the
    index backlog (the audit trail of a secured server, indexed once it is idle); then, on
    SQLite, the copy of the WAL that work wrote into the database file (a checkpoint, which a
    server's checkpoint thread would do during the next turn). Done during a measured turn,
    any of them would weigh on that turn alone."""
    engine = create_engine(database_url)
    deadline = time.monotonic() + timeout
    waiting = [
        select(func.count()).select_from(outbox).where(*due(now())),
        WAITING,
    ]
    try:
        while True:
            with engine.connect() as conn:
                if not any(conn.execute(query).scalar() for query in waiting):
                    if engine.dialect.name == "sqlite":
                        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the background work was not done within {timeout:.0f} s")
            time.sleep(0.2)
    finally:
        engine.dispose()


def cpu_seconds(process: subprocess.Popen) -> float:
    """The CPU time a process has used so far, user and system (Linux /proc)."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_memory_mb(process: subprocess.Popen) -> float | None:
    """The peak resident memory of a process (VmHWM), where /proc tells it."""
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
