"""Connections to the store: SQLite (embedded default, WAL) or PostgreSQL (production).

Writers on SQLite take the database lock when their transaction starts (`BEGIN IMMEDIATE`), so
two writers queue instead of failing on a lock upgrade; readers run beside them thanks to WAL.
Within one process, writers first queue on a lock of the process: SQLite's own busy handler
waits by sleeping (up to 100 ms a time), which under a burst of writes left the file idle
while writers slept, and cost the tail of write latencies tenfold.
SQLite copies the WAL back into the database file (a checkpoint: page writes and an fsync) in a
thread of its own, not in the commit of whichever writer crosses the WAL's threshold: inline,
that copy took a quarter of a create's time, inside the writers' lock.
On PostgreSQL, writers lock the rows they change (`SELECT ... FOR UPDATE`) at READ COMMITTED.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError

from fhir_server.storage.keys import ResourceKeys

WRITE = "fhir_write"

# Pages the WAL may hold before a committing writer checkpoints it itself: a bound for when the
# checkpoint thread falls behind, or for processes that write outside `Database.transaction`.
_INLINE_CHECKPOINT_PAGES = 16384
_CHECKPOINT_SECONDS = 0.5
PING_AFTER_SECONDS = 1.0  # a pooled PostgreSQL connection idle longer is pinged before use


class Database:
    """An SQLAlchemy engine plus the transaction discipline of the server."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        self._writers: threading.RLock | None = None
        self._checkpointer: Checkpointer | None = None
        self.resource_keys: ResourceKeys | None = None
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(url)
            self._writers = threading.RLock()
            if self.url.database and self.url.database != ":memory:":
                self._checkpointer = Checkpointer(self.url.database)
                weakref.finalize(self, self._checkpointer.stop)
        else:
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size)
            _ping_when_idle(self.engine)
            self.resource_keys = ResourceKeys()

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def writers(self) -> AbstractContextManager[object]:
        """The lock this process's writers queue on before SQLite's; none on PostgreSQL.
        Reentrant: a holder may open write transactions."""
        return self._writers if self._writers is not None else nullcontext()

    @contextmanager
    def transaction(self, write: bool) -> Iterator[Connection]:
        """A connection inside one database transaction, committed on success."""
        with ExitStack() as stack:
            if write:
                stack.enter_context(self.writers())
            conn = stack.enter_context(self.engine.connect())
            if write:
                conn = conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn
        if write and self._checkpointer is not None:
            self._checkpointer.written()

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()


class Checkpointer:
    """Checkpoints an SQLite database in WAL mode from a thread of its own, half a second after
    writes, PASSIVE: it never waits for nor blocks readers and writers, and copies what no
    reader still needs. Started by the first write."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pending = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def written(self) -> None:
        self._pending.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stopped.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name=f"sqlite-checkpoint {self.path}", daemon=True
                    )
                    self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._pending.set()  # wakes the thread
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while self._pending.wait() and not self._stopped.wait(_CHECKPOINT_SECONDS):
                self._pending.clear()
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection on checkout only when it has been idle: one used less than
    `PING_AFTER_SECONDS` ago is taken as alive, as HikariCP does. Pinging on every checkout
    (`pool_pre_ping`) cost a round trip per request, 13 % of a create. A connection found
    dead is replaced before use; one that dies within the window fails its request, and the
    pool then drops its dead neighbours."""

    def used(_dbapi_connection: Any, record: Any, *_: Any) -> None:
        record.info["used"] = time.monotonic()

    def check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("used", 0.0) < PING_AFTER_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("a pooled connection did not answer its ping") from exc

    event.listen(engine, "connect", used)
    event.listen(engine, "checkin", used)
    event.listen(engine, "checkout", check)


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
        cursor.execute(f"PRAGMA wal_autocheckpoint={_INLINE_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Straight to the driver: through `exec_driver_sql` this statement cost more than
        # many a read it opens.
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
