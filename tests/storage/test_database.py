"""SQLite's checkpoints run in a thread of their own: a commit reaches the database file
without a writer paying for the copy, and closing the database stops the thread."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from fhir_server.storage.database import Database


def _file_holds(path: Path, copy: Path, value: int) -> bool:
    """Whether the database file alone, without its WAL, holds the row."""
    shutil.copyfile(path, copy)
    try:
        with sqlite3.connect(copy) as conn:
            return conn.execute("SELECT 1 FROM t WHERE x = ?", (value,)).fetchone() is not None
    except sqlite3.DatabaseError:  # copied before the table, or halfway through a checkpoint
        return False
    finally:
        copy.unlink()
        Path(f"{copy}-wal").unlink(missing_ok=True)


def _checkpoint_threads(path: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"sqlite-checkpoint {path}"]


def test_a_commit_reaches_the_database_file_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "fhir.db"
    database = Database(f"sqlite:///{path}")
    with database.transaction(write=True) as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    with database.transaction(write=True) as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (42)")
    # The pool keeps its connections open and a commit leaves far fewer pages in the WAL than
    # the inline threshold: only the checkpoint thread copies them into the file.
    deadline = time.monotonic() + 20
    while not _file_holds(path, tmp_path / "copy.db", 42):
        assert time.monotonic() < deadline, "the WAL was not checkpointed"
        time.sleep(0.05)
    with database.transaction(write=False) as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 16384
    assert _checkpoint_threads(path)
    database.dispose()
    assert not _checkpoint_threads(path)


def test_no_thread_for_a_database_only_read(tmp_path: Path) -> None:
    path = tmp_path / "fhir.db"
    database = Database(f"sqlite:///{path}")
    with database.transaction(write=False) as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    assert not _checkpoint_threads(path)
    database.dispose()


def _pings(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    ping = database.engine.dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(database.engine.dialect, "do_ping", counted)
    return pings


def _backend(database: Database) -> int:
    with database.transaction(write=False) as conn:
        return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def test_a_connection_used_just_now_is_not_pinged(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round trip per request saved: only a connection idle for a while is pinged."""
    database = Database(postgres_url, pool_size=1)
    pings = _pings(database, monkeypatch)
    assert _backend(database) == _backend(database)
    assert pings == []
    monkeypatch.setattr("fhir_server.storage.database.PING_AFTER_SECONDS", 0.0)
    _backend(database)
    assert pings == [1]
    database.dispose()


def test_an_idle_connection_found_dead_is_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(postgres_url, pool_size=1)
    dead = _backend(database)
    other = Database(postgres_url, pool_size=1)
    with other.transaction(write=False) as conn:
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({dead})")
    other.dispose()
    monkeypatch.setattr("fhir_server.storage.database.PING_AFTER_SECONDS", 0.0)
    assert _backend(database) != dead  # pinged, found dead, replaced before use
    database.dispose()
