"""SQLite's checkpoints run in a thread of their own: a commit reaches the database file
without a writer paying for the copy, and closing the database stops the thread."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

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
