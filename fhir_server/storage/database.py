"""Connections to the store: SQLite (embedded default, WAL) or PostgreSQL (production).

Writers on SQLite take the database lock when their transaction starts (`BEGIN IMMEDIATE`), so
two writers queue instead of failing on a lock upgrade; readers run beside them thanks to WAL.
Within one process, writers first queue on a lock of the process: SQLite's own busy handler
waits by sleeping (up to 100 ms a time), which under a burst of writes left the file idle
while writers slept, and cost the tail of write latencies tenfold.
On PostgreSQL, writers lock the rows they change (`SELECT ... FOR UPDATE`) at READ COMMITTED.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

WRITE = "fhir_write"


class Database:
    """An SQLAlchemy engine plus the transaction discipline of the server."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        self._writers: threading.RLock | None = None
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(url)
            self._writers = threading.RLock()
        else:
            self.engine = create_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def transaction(self, write: bool) -> Iterator[Connection]:
        """A connection inside one database transaction, committed on success."""
        with ExitStack() as stack:
            if write and self._writers is not None:
                stack.enter_context(self._writers)
            conn = stack.enter_context(self.engine.connect())
            if write:
                conn = conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # SQLAlchemy issues BEGIN itself, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
