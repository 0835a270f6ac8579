"""The repository's buffered writes: a flush writes every buffered table (on PostgreSQL in one
round trip), and a failure comes out as SQLAlchemy's error, which the engine's retries and
error handling read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from fhir_server.server import Server
from fhir_server.storage.repository import Repository
from fhir_server.storage.schema import ReferenceIndex, TokenIndex, VersionRow
from tests.conftest import BACKENDS, database_url, make_server, wipe


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    server = make_server(database_url(request.param, request, tmp_path))
    wipe(server)
    yield server
    server.close()


WHEN = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _observation(repository: Repository, id_: str) -> int:
    """A new Observation whose version and index rows are buffered; its pk."""
    pk = repository.insert_resource("Observation", id_, 1, WHEN, b"digest")
    _buffer(repository, pk, WHEN)
    return pk


def _buffer(repository: Repository, pk: int, when: datetime) -> None:
    repository.insert_version(pk, "Observation", "o1", 1, when, "POST", b"{}")
    repository.add_index_rows(
        pk,
        {
            TokenIndex: [
                {"type": "Observation", "param": "status", "composite": None, "code": "final"},
                {"type": "Observation", "param": "code", "composite": None, "code": "29463-7"},
            ],
            ReferenceIndex: [
                {
                    "type": "Observation",
                    "param": "subject",
                    "composite": None,
                    "target_type": "Patient",
                    "target_id": "p1",
                },
            ],
        },
    )


def test_flush_writes_every_buffered_table(server: Server) -> None:
    with server.database.transaction(write=True) as conn:
        repository = Repository(conn, server.database.is_postgres)
        _observation(repository, "o1")
        repository.flush()
        assert not (repository.pending_versions or repository.pending_index)
    with server.database.transaction(write=False) as conn:
        counts = [
            conn.execute(select(func.count()).select_from(t.__table__)).scalar()
            for t in (VersionRow, TokenIndex, ReferenceIndex)
        ]
        stored = conn.execute(select(VersionRow.__table__.c.last_updated)).scalar()
    assert counts == [1, 2, 1]
    assert stored == WHEN


def test_flush_failure_is_sqlalchemy_error_and_leaves_nothing(server: Server) -> None:
    with pytest.raises(IntegrityError), server.database.transaction(write=True) as conn:
        repository = Repository(conn, server.database.is_postgres)
        _buffer(repository, 999_999, WHEN)  # no such resource: the foreign keys refuse it
        repository.flush()
    with server.database.transaction(write=False) as conn:
        assert conn.execute(select(func.count()).select_from(TokenIndex.__table__)).scalar() == 0


def test_clear_index_writes_the_buffer_first(server: Server) -> None:
    """Clearing one resource's index rows (an update) first writes what is buffered for
    others, in the same round trip on PostgreSQL."""
    with server.database.transaction(write=True) as conn:
        repository = Repository(conn, server.database.is_postgres)
        first = _observation(repository, "o1")
        repository.flush()
        second = _observation(repository, "o2")
        repository.clear_index(first, "Observation")
    t = TokenIndex.__table__.c
    with server.database.transaction(write=False) as conn:
        owners = conn.execute(select(t.resource_pk).distinct()).scalars().all()
    assert owners == [second]
