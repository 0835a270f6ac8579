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
from sqlalchemy import inspect, text

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
    assert current_revision(database) == "0002"
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
    assert "database at revision 0002" in result.stdout


def test_sqlite_statistics_are_gathered(tmp_path: Path) -> None:
    """Without statistics SQLite's planner picks indexes blindly (a search's date EXISTS then
    scans every past date per candidate); `optimize` gathers them."""
    database = Database(f"sqlite:///{tmp_path / 'stats.db'}")
    upgrade(database)
    with database.transaction(write=True) as conn:
        conn.exec_driver_sql(
            "INSERT INTO resource (type, id, version, last_updated, deleted) "
            "VALUES ('Patient', 'p1', 1, '2026-01-01T00:00:00+00:00', 0)"
        )
    database.optimize()
    with database.transaction(write=False) as conn:
        tables = {row[0] for row in conn.exec_driver_sql("SELECT tbl FROM sqlite_stat1")}
    assert "resource" in tables
    database.dispose()
