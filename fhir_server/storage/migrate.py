"""Schema migrations (Alembic), applied at start-up or by `python -m fhir_server migrate`.

Several workers may start at once: on PostgreSQL an advisory lock lets one of them migrate while
the others wait; on SQLite the write transaction does the same.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from fhir_server.storage.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x46484952  # "FHIR"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    config = _config()
    with database.transaction(write=True) as conn:
        if database.is_postgres:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current_revision(database: Database) -> str | None:
    with database.transaction(write=False) as conn:
        return MigrationContext.configure(conn).get_current_revision()
