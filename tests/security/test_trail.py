"""The audit events of reads stored in groups (`fhir_server.security.trail`): callers queued
on the writers' lock have their events stored by the first of them, in one transaction, and
each returns only once its event is committed; when the group's transaction fails, every
caller of the group fails and none of its events is stored."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import event, text

from fhir_server.security import audit
from fhir_server.security.trail import Trail
from fhir_server.server import Server
from tests.conftest import make_server


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Server]:
    """On SQLite reads are audited after their transaction, behind the writers' lock (on
    PostgreSQL, in the read's own transaction)."""
    server = make_server(f"sqlite:///{tmp_path / 'fhir.db'}")
    yield server
    server.close()


def _event(reason: str) -> dict[str, Any]:
    return audit.authentication_failure("192.0.2.7", reason)


def _stored(server: Server) -> list[str]:
    with server.database.transaction(write=False) as conn:
        bodies = conn.execute(
            text(
                "SELECT v.body FROM resource_version v JOIN resource r ON r.pk = v.resource_pk "
                "WHERE r.type = 'AuditEvent'"
            )
        ).scalars()
        return sorted(orjson.loads(body)["outcomeDesc"] for body in bodies)


def _unserialisable(event: dict[str, Any]) -> dict[str, Any]:
    return event | {"extension": [{"url": "urn:x", "valueString": object()}]}


def _queue_behind_the_lock(server: Server, trail: Trail, groups: list[list[dict]]) -> list:
    """Each group stored by a thread of its own while the writers' lock is held, then the lock
    released; what each thread raised (None when it returned)."""
    outcomes: list[Any] = [None] * len(groups)

    def store(n: int) -> None:
        try:
            trail.store(groups[n])
        except Exception as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=store, args=(n,)) for n in range(len(groups))]
    with server.database.writers():
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(trail._queue) < len(groups):  # every caller queued behind the lock
            assert time.monotonic() < deadline
            time.sleep(0.01)
    for thread in threads:
        thread.join(10)
    return outcomes


def test_queued_callers_share_one_transaction(sqlite: Server) -> None:
    server = sqlite
    trail = Trail(server.engine)
    commits: list[int] = []
    event.listen(server.database.engine, "commit", lambda conn: commits.append(1))
    outcomes = _queue_behind_the_lock(server, trail, [[_event(f"r{n}")] for n in range(4)])
    assert outcomes == [None] * 4
    assert len(commits) == 1
    assert _stored(server) == ["r0", "r1", "r2", "r3"]


def test_a_failing_group_fails_every_caller_and_stores_nothing(sqlite: Server) -> None:
    server = sqlite
    trail = Trail(server.engine)
    broken = _unserialisable(_event("broken"))
    outcomes = _queue_behind_the_lock(server, trail, [[_event("fine")], [broken]])
    assert all(isinstance(outcome, TypeError) for outcome in outcomes), outcomes
    assert _stored(server) == []


def test_a_caller_alone_stores_its_events(server: Server) -> None:
    trail = Trail(server.engine)
    trail.store([_event("a"), _event("b")])
    with pytest.raises(TypeError):
        trail.store([_event("c"), _unserialisable(_event("d"))])
    assert _stored(server) == ["a", "b"]
