"""The Alembic migrations build exactly the schema of the models, on SQLite and PostgreSQL,
and `python -m fhir_server migrate` applies them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect, text

from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.server import Server
from fhir_server.storage.database import Database
from fhir_server.storage.migrate import current_revision, upgrade
from fhir_server.storage.schema import Base
from tests.conftest import BACKENDS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrate.db'}"
    url = request.getfixturevalue("postgres_url")
    database = Database(url)
    with database.engine.connect() as conn:  # a fresh schema inside the test database
        conn.execute(text("DROP SCHEMA IF EXISTS migrate_test CASCADE"))
        conn.execute(text("CREATE SCHEMA migrate_test"))
        conn.commit()
    database.dispose()
    return url + "?options=-csearch_path%3Dmigrate_test"


def test_migrations_match_the_models(empty_url: str) -> None:
    database = Database(empty_url)
    upgrade(database)
    assert current_revision(database) == "0008"
    upgrade(database)  # idempotent
    with database.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    database.dispose()
    assert differences == []
    assert {"resource", "resource_version", "outbox", "search_token"} <= tables


def test_migrate_command(empty_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fhir_server", "migrate"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": empty_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "database at revision 0008" in result.stdout


def test_sqlite_checks_each_candidate_through_its_own_index_rows(tmp_path: Path) -> None:
    """A search's non-driving criteria are checked per candidate through the index on
    resource_pk, whatever statistics SQLite has: with the type in the check, sampled
    statistics made it walk every open Task's status row for each candidate."""
    from fhir_server.engine.interaction import Context, Interaction, Kind
    from fhir_server.server import Server
    from fhir_server.settings import Settings

    server = Server(
        Settings(database_url=f"sqlite:///{tmp_path / 'plan.db'}", security_enabled=False),
        load_plugins=False,
        load_conformance=False,
    )
    with server.database.transaction(write=True) as conn:  # misleading sampled statistics
        conn.exec_driver_sql("PRAGMA analysis_limit=10")
        conn.exec_driver_sql("ANALYZE")
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if "EXISTS" in statement:
            captured.append((statement, parameters))

    event.listen(server.database.engine, "before_cursor_execute", capture)
    params = [("owner", "Practitioner/p1"), ("status", "requested,in-progress")]
    server.engine.execute(Interaction(Kind.SEARCH_TYPE, "Task", params=params), Context())
    statement, parameters = captured[0]
    with server.database.transaction(write=False) as conn:
        plan = " ".join(
            str(row[3])
            for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        )
    server.close()
    assert "ix_search_token_resource_pk" in plan, plan


def test_migration_drops_sampled_sqlite_statistics(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'stats.db'}")
    upgrade(database, "0002")
    with database.transaction(write=True) as conn:
        conn.exec_driver_sql("ANALYZE")
        assert conn.exec_driver_sql("SELECT count(*) FROM sqlite_stat1").scalar()
    upgrade(database)
    with database.transaction(write=False) as conn:
        names = {row[0] for row in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
    database.dispose()
    assert "sqlite_stat1" not in names


def test_audit_trail_references_move_to_their_own_table(empty_url: str) -> None:
    """Migration 0004 moves the AuditEvents' reference rows out of the clinical index; 0005
    drops the `patient` rows that repeat a Patient `entity` row (an agent's stay)."""
    database = Database(empty_url)
    upgrade(database, "0003")
    references = [
        (1, "Observation", "patient", "p1"),
        (2, "AuditEvent", "entity", "p1"),
        (2, "AuditEvent", "patient", "p1"),
        (2, "AuditEvent", "patient", "p2"),  # the agent: a patient reading their own data
    ]
    with database.transaction(write=True) as conn:
        for pk, type_, id_ in ((1, "Observation", "o1"), (2, "AuditEvent", "a1")):
            conn.execute(
                text(
                    "INSERT INTO resource (pk, type, id, version, last_updated, deleted, "
                    "content_hash) VALUES (:pk, :type, :id, 1, CURRENT_TIMESTAMP, :no, :hash)"
                ),
                {"pk": pk, "type": type_, "id": id_, "no": False, "hash": b"h"},
            )
        for pk, type_, param, target in references:
            conn.execute(
                text(
                    "INSERT INTO search_reference (resource_pk, type, param, target_type, "
                    "target_id) VALUES (:pk, :type, :param, 'Patient', :target)"
                ),
                {"pk": pk, "type": type_, "param": param, "target": target},
            )
    upgrade(database)
    with database.transaction(write=False) as conn:
        clinical = conn.execute(text("SELECT type FROM search_reference")).scalars().all()
        audit = conn.execute(
            text("SELECT param, target_id FROM search_audit_reference ORDER BY param")
        ).all()
    database.dispose()
    assert clinical == ["Observation"]
    assert [tuple(row) for row in audit] == [("entity", "p1"), ("patient", "p2")]


@pytest.mark.parametrize(
    ("type_", "params", "table", "index"),
    [
        (
            "Patient",
            [("family:exact", "Dupont")],
            "search_string",
            "ix_search_string_type_param_value_normalized",
        ),
        (
            "CarePlan",
            [("instantiates-canonical", "https://cpts.example/PlanDefinition/ic")],
            "search_reference",
            "ix_search_reference_type_param_url",
        ),
    ],
)
def test_exact_strings_and_urls_are_found_through_an_index(
    server: Server, type_: str, params: list, table: str, index: str
) -> None:
    """Since 0008 `:exact` goes through the normalized value's index, and the url index
    holds only the rows that have a url: each must still serve its search."""
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if table in statement:
            captured.append((statement, parameters))

    event.listen(server.database.engine, "before_cursor_execute", capture)
    server.engine.execute(Interaction(Kind.SEARCH_TYPE, type_, params=params), Context())
    event.remove(server.database.engine, "before_cursor_execute", capture)
    statement, parameters = captured[0]
    with server.database.transaction(write=False) as conn:
        if server.database.is_postgres:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # tables of a test are tiny
            rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters)
            plan = " ".join(str(row[0]) for row in rows)
        else:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            plan = " ".join(str(row[3]) for row in rows)
    assert index in plan, plan
