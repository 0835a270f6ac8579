"""The repository's buffered writes: a flush writes every buffered table (on PostgreSQL in one
round trip), and a failure comes out as SQLAlchemy's error, which the engine's retries and
error handling read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Connection, func, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.server import Server
from fhir_server.storage.repository import Repository, read_text
from fhir_server.storage.schema import (
    OutboxRow,
    ReferenceIndex,
    ResourceRow,
    StateRow,
    TokenIndex,
    VersionRow,
)
from tests.conftest import make_server, wipe

WHEN = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _repository(server: Server, conn: Connection) -> Repository:
    """As a unit of work has it: on PostgreSQL, new resources' keys come first, their rows
    are buffered with the others."""
    return Repository(conn, server.database.is_postgres, server.database.resource_keys)


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
        repository = _repository(server, conn)
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


def test_flushed_rows_are_stored_as_sqlalchemy_stores_them(server: Server) -> None:
    """Rows written past SQLAlchemy's `execute` (sqlite3's executemany, psycopg's pipeline)
    keep its conversions and defaults: a timestamp in another zone is stored in UTC, a column
    left out takes its default."""
    paris = datetime(2026, 11, 24, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    with server.database.transaction(write=True) as conn:
        repository = _repository(server, conn)
        repository.insert_outbox(
            [
                {
                    "consumer": "test",
                    "created_at": paris,
                    "interaction": "create",
                    "resource_type": "Observation",
                    "resource_id": "o1",
                    "version": 1,
                    "available_at": paris,
                }
            ]
        )
        repository.flush()
    outbox = OutboxRow.__table__
    with server.database.transaction(write=False) as conn:
        row = conn.execute(select(outbox.c.created_at, outbox.c.attempts)).one()
    assert row.created_at == WHEN and row.created_at.tzinfo is not None
    assert row.attempts == 0


def test_flush_failure_is_sqlalchemy_error_and_leaves_nothing(server: Server) -> None:
    with pytest.raises(IntegrityError), server.database.transaction(write=True) as conn:
        repository = _repository(server, conn)
        _buffer(repository, 999_999, WHEN)  # no such resource: the foreign keys refuse it
        repository.flush()
    with server.database.transaction(write=False) as conn:
        assert conn.execute(select(func.count()).select_from(TokenIndex.__table__)).scalar() == 0


def test_clear_index_writes_the_buffer_first(server: Server) -> None:
    """Clearing one resource's index rows (an update) first writes what is buffered for
    others, in the same round trip on PostgreSQL."""
    with server.database.transaction(write=True) as conn:
        repository = _repository(server, conn)
        first = _observation(repository, "o1")
        repository.flush()
        second = _observation(repository, "o2")
        repository.clear_index(first, "Observation")
    t = TokenIndex.__table__.c
    with server.database.transaction(write=False) as conn:
        owners = conn.execute(select(t.resource_pk).distinct()).scalars().all()
    assert owners == [second]


def test_a_new_resource_row_waits_for_the_flush_on_postgresql(server: Server) -> None:
    """Its key known from the sequence, a new resource's row goes with its other rows; on
    SQLite it is inserted at once, for its key."""
    resources = select(func.count()).select_from(ResourceRow.__table__)
    with server.database.transaction(write=True) as conn:
        repository = _repository(server, conn)
        pk = _observation(repository, "o1")
        assert conn.execute(resources).scalar() == (0 if server.database.is_postgres else 1)
        repository.flush()
        assert conn.execute(select(ResourceRow.__table__.c.pk)).scalars().all() == [pk]


def test_flush_and_commit_sends_the_commit_with_the_rows_on_postgresql(server: Server) -> None:
    """On PostgreSQL the rows and the COMMIT go together, and the transaction's own commit
    then finds nothing to do; on SQLite the transaction commits as usual."""
    versions = select(func.count()).select_from(VersionRow.__table__)
    with server.database.transaction(write=True) as conn:
        repository = _repository(server, conn)
        _observation(repository, "o1")
        repository.flush_and_commit()
        if server.database.is_postgres:  # another connection sees it before the block ends
            with server.database.transaction(write=False) as other:
                assert other.execute(versions).scalar() == 1
    with server.database.transaction(write=False) as conn:
        assert conn.execute(versions).scalar() == 1


def _audit_like(repository: Repository, pk: int | None = None) -> None:
    """One row in each of three tables, as the AuditEvent of a read: a resource, its version,
    its entry in the index backlog (`pk`: of a resource that does not exist)."""
    if pk is None:
        pk = repository.insert_resource("AuditEvent", "a1", 1, WHEN, b"digest")
    repository.insert_version(pk, "AuditEvent", "a1", 1, WHEN, "POST", b"{}")
    repository.insert_backlog(pk)


def test_rows_of_one_each_are_stored_together_or_not_at_all(server: Server) -> None:
    """On PostgreSQL they go as one statement (data-modifying CTEs), whose foreign keys are
    checked at its end: a version may follow its resource, not precede a missing one."""
    with server.database.transaction(write=True) as conn:
        repository = _repository(server, conn)
        _audit_like(repository)
        repository.flush()
    with pytest.raises(IntegrityError), server.database.transaction(write=True) as conn:
        repository = _repository(server, conn)
        _audit_like(repository, pk=999_999)
        repository.flush()
    with server.database.transaction(write=False) as conn:
        assert conn.execute(select(VersionRow.__table__.c.resource_pk)).scalars().all() == [
            conn.execute(select(ResourceRow.__table__.c.pk)).scalar()
        ]


def test_a_commit_that_need_not_be_durable_still_commits(server: Server) -> None:
    """A read's audit trail commits without waiting for the disk on PostgreSQL: committed all
    the same, seen by another connection at once."""
    versions = select(func.count()).select_from(VersionRow.__table__)
    with server.database.transaction(write=False) as conn:
        repository = _repository(server, conn)
        _audit_like(repository)
        repository.flush_and_commit(durable=False)
        if server.database.is_postgres:
            with server.database.transaction(write=False) as other:
                assert other.execute(versions).scalar() == 1
    with server.database.transaction(write=False) as conn:
        assert conn.execute(versions).scalar() == 1


def test_read_text_first_or_later_in_a_transaction(server: Server) -> None:
    """First in its transaction (with the BEGIN on PostgreSQL) or after other statements, the
    same value; a failing query is SQLAlchemy's error, and the transaction is rolled back."""
    with server.database.transaction(write=True) as conn:
        conn.execute(insert(StateRow.__table__), {"key": "k", "value": "v1"})
    query = "SELECT value FROM server_state WHERE key = 'k'"
    with server.database.transaction(write=False) as conn:
        assert read_text(conn, query) == "v1"
        assert read_text(conn, query) == "v1"
        assert read_text(conn, "SELECT value FROM server_state WHERE key = 'none'") is None
    with pytest.raises(DBAPIError), server.database.transaction(write=False) as conn:
        read_text(conn, "SELECT nothing FROM server_state")
    with server.database.transaction(write=False) as conn:
        assert read_text(conn, query) == "v1"


def test_resource_keys_stay_unique_after_the_sequence_restarts(postgres_url: str) -> None:
    """`TRUNCATE ... RESTART IDENTITY` sends the sequence back to 1 while keys handed out
    before it may still be in use: the next block moves the sequence past them (PostgreSQL:
    SQLite assigns each key as it inserts the row)."""
    server = make_server(postgres_url)
    wipe(server)

    def create(count: int, first: int) -> None:
        for n in range(first, first + count):
            outcome = server.engine.execute(
                Interaction(Kind.CREATE, "Basic", resource=_basic(n)), Context()
            )
            assert outcome.status == 201

    create(70, 0)  # a block and part of another
    with server.database.transaction(write=True) as conn:
        conn.exec_driver_sql("TRUNCATE resource RESTART IDENTITY CASCADE")
    create(200, 70)  # the rest of the block, then keys the restarted sequence gives again
    with server.database.transaction(write=False) as conn:
        keys = conn.execute(select(ResourceRow.__table__.c.pk)).scalars().all()
    server.close()
    assert len(keys) == len(set(keys)) == 200


def _basic(n: int) -> dict:
    return {"resourceType": "Basic", "code": {"text": f"item {n}"}}


def _token_pks(server: Server, code: str) -> list[int]:
    t = TokenIndex.__table__.c
    with server.database.transaction(write=False) as conn:
        query = select(t.pk).where(t.type == "Patient", t.param == "identifier", t.code == code)
        return list(conn.execute(query).scalars())


def _found(server: Server, params: list[tuple[str, str]]) -> int:
    outcome = server.engine.execute(
        Interaction(Kind.SEARCH_TYPE, "Patient", params=params), Context()
    )
    return len(outcome.returned)


def test_an_update_replaces_the_index_rows_that_changed(server: Server) -> None:
    """After an update the index is the new version's: changed and removed values are gone,
    unchanged ones still found. On SQLite the unchanged rows are left where they are rather
    than deleted and inserted again."""
    wipe(server)
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:x", "value": "1"}, {"system": "urn:x", "value": "2"}],
        "name": [{"family": "Durand"}],
        "birthDate": "1950-01-02",
    }
    ctx = Context()
    id_ = server.engine.execute(Interaction(Kind.CREATE, "Patient", resource=patient), ctx).id
    other = {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "3"}]}
    server.engine.execute(Interaction(Kind.CREATE, "Patient", resource=other), ctx)  # rows after
    kept = _token_pks(server, "1")
    update = {
        **patient,
        "id": id_,
        "identifier": patient["identifier"][:1],
        "birthDate": "1950-01-03",
    }
    assert (
        server.engine.execute(Interaction(Kind.UPDATE, "Patient", id_, resource=update), ctx).status
        == 200
    )

    assert _found(server, [("birthdate", "1950-01-03")]) == 1
    assert _found(server, [("birthdate", "1950-01-02")]) == 0
    assert _found(server, [("identifier", "urn:x|2")]) == 0
    assert _found(server, [("identifier", "urn:x|1"), ("family", "Durand")]) == 1
    assert _token_pks(server, "2") == []
    assert len(_token_pks(server, "1")) == 1
    if not server.database.is_postgres:
        assert _token_pks(server, "1") == kept
