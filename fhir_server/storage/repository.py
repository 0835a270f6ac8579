"""Resource repository: the SQL behind each interaction, on one open connection (one database
transaction). SQLAlchemy Core, not the ORM, and statements built once with bound parameters:
these are the server's hot path."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from psycopg import Connection as DriverConnection
from psycopg import Error as DriverError
from psycopg import Pipeline, errors
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.pq.abc import PGresult
from sqlalchemy import (
    Connection,
    Executable,
    Insert,
    Table,
    and_,
    bindparam,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.exc import DBAPIError

from fhir_server.storage.keys import ResourceKeys
from fhir_server.storage.lists import among, key_list
from fhir_server.storage.schema import (
    INDEX_TABLES,
    BacklogRow,
    OutboxRow,
    ResourceRow,
    VersionRow,
    index_tables,
)

resource_table = ResourceRow.__table__
version_table = VersionRow.__table__
outbox_table = OutboxRow.__table__
backlog_table = BacklogRow.__table__
_r, _v = resource_table, version_table
_VERSION_COLUMNS = (
    _v.c.pk,
    _v.c.type,
    _v.c.id,
    _v.c.version,
    _v.c.last_updated,
    _v.c.method,
    _v.c.body,
)

_CURRENT = select(_r.c.pk, _r.c.version, _r.c.last_updated, _r.c.deleted, _r.c.content_hash).where(
    _r.c.type == bindparam("type"), _r.c.id == bindparam("id")
)
_CURRENT_FOR_UPDATE = _CURRENT.with_for_update()
_READ = (
    select(*_VERSION_COLUMNS)
    .select_from(_r.join(_v, and_(_v.c.resource_pk == _r.c.pk, _v.c.version == _r.c.version)))
    .where(_r.c.type == bindparam("type"), _r.c.id == bindparam("id"))
)
# Through `resource` (unique type, id) to the version (unique resource_pk, version): the
# version table has no (type, id) index, and filtering it on those columns scanned every
# version of the type (11 ms a read at 100k resources on SQLite, on every Task update).
_READ_VERSION = (
    select(*_VERSION_COLUMNS)
    .select_from(_r.join(_v, _v.c.resource_pk == _r.c.pk))
    .where(
        _r.c.type == bindparam("type"),
        _r.c.id == bindparam("id"),
        _v.c.version == bindparam("version"),
    )
)
_READ_MANY = (
    select(_r.c.pk, *_VERSION_COLUMNS[1:])
    .select_from(_r.join(_v, and_(_v.c.resource_pk == _r.c.pk, _v.c.version == _r.c.version)))
    .where(among(_r.c.pk, key_list("pks")))
)
_ADVANCE = (
    update(_r)
    .where(_r.c.pk == bindparam("_pk"), _r.c.version == bindparam("_version"))
    .values(
        version=bindparam("version"),
        last_updated=bindparam("last_updated"),
        deleted=bindparam("deleted"),
        content_hash=bindparam("content_hash"),
    )
)
_INSERTS = {
    t.name: insert(t)
    for t in (_r, _v, outbox_table, backlog_table, *(i.__table__ for i in INDEX_TABLES))
}
_CLEAR_INDEX = {
    t: delete(t.__table__).where(t.__table__.c.resource_pk == bindparam("pk")) for t in INDEX_TABLES
}
_DRIVER_CLEAR = {
    t: f"DELETE FROM {t.__tablename__} WHERE resource_pk = %(pk)s" for t in INDEX_TABLES
}
# A statement, the same as psycopg's SQL (PostgreSQL's pipeline; sqlite3's is compiled from the
# statement), and its rows of parameters.
_Command = tuple[Executable, str, list[dict]]
_SQLITE = pysqlite.dialect()
# Each parameter of a statement for sqlite3: its name, SQLAlchemy's conversion, its default.
_Binds = tuple[tuple[str, Callable[[Any], Any] | None, Any], ...]
_LATEST_VERSION = select(_v.c.pk).order_by(_v.c.pk.desc()).limit(1)


@dataclass(frozen=True, slots=True)
class Current:
    """The current state of a logical resource."""

    pk: int
    version: int
    last_updated: datetime
    deleted: bool
    content_hash: bytes | None


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One stored version; `body` is None for a deletion."""

    pk: int
    type: str
    id: str
    version: int
    last_updated: datetime
    method: str
    body: bytes | None


@dataclass(frozen=True, slots=True)
class HistoryCursor:
    """Keyset position in a history listing (newest first): the last row of a page."""

    last_updated: datetime
    pk: int


class Repository:
    """The SQL of one unit of work. Version, search-index and outbox rows are buffered and
    written in one executemany per table when something is about to read them (`flush`, which
    every read here calls, and the engine before searches and the commit): a transaction of a
    thousand resources makes a few inserts, not ten thousand round trips."""

    def __init__(
        self, conn: Connection, is_postgres: bool, keys: ResourceKeys | None = None
    ) -> None:
        self.conn = conn
        self.is_postgres = is_postgres
        self.keys = keys  # where new resources' keys come from ahead of their rows
        self.pending_resources: list[dict] = []
        self.pending_versions: list[dict] = []
        self.pending_outbox: list[dict] = []
        self.pending_backlog: list[dict] = []
        self.pending_index: dict[type, list[dict]] = {}

    # -- reading ---------------------------------------------------------------------------------

    def current(self, type_: str, id_: str, for_update: bool = False) -> Current | None:
        self.flush()
        stmt = _CURRENT_FOR_UPDATE if for_update and self.is_postgres else _CURRENT
        row = self.conn.execute(stmt, {"type": type_, "id": id_}).first()
        return Current(*row) if row else None

    def read(self, type_: str, id_: str) -> StoredVersion | None:
        """The current version (possibly a deletion) of a resource."""
        self.flush()
        row = self.conn.execute(_READ, {"type": type_, "id": id_}).first()
        return StoredVersion(*row) if row else None

    def read_version(self, type_: str, id_: str, version: int) -> StoredVersion | None:
        self.flush()
        row = self.conn.execute(_READ_VERSION, {"type": type_, "id": id_, "version": version})
        found = row.first()
        return StoredVersion(*found) if found else None

    def read_many(self, pks: Sequence[int]) -> dict[int, StoredVersion]:
        """Current versions by resource pk (search results, includes); here `pk` of each
        StoredVersion is the resource's pk, not the version's."""
        if not pks:
            return {}
        self.flush()
        rows = self.conn.execute(_READ_MANY, {"pks": list(pks)})
        return {row[0]: StoredVersion(*row) for row in rows}

    def history(
        self,
        type_: str | None,
        id_: str | None,
        since: datetime | None,
        at_most: int,
        cursor: HistoryCursor | None = None,
        newer: bool = False,
        until_pk: int | None = None,
    ) -> list[StoredVersion]:
        """Versions newest first. With a cursor, the `at_most` versions just older than it, or
        just newer when `newer` (for a previous page); `until_pk` pins the listing to the
        versions that existed when its first page was read."""
        self.flush()
        v = version_table
        stmt = select(*_VERSION_COLUMNS)
        if type_ is not None:
            stmt = stmt.where(v.c.type == type_)
        if id_ is not None:
            stmt = stmt.where(v.c.id == id_)
        if since is not None:
            stmt = stmt.where(v.c.last_updated >= since)
        if until_pk is not None:
            stmt = stmt.where(v.c.pk <= until_pk)
        if cursor is not None:
            at, pk = cursor.last_updated, cursor.pk
            if newer:
                stmt = stmt.where(
                    or_(v.c.last_updated > at, and_(v.c.last_updated == at, v.c.pk > pk))
                )
            else:
                stmt = stmt.where(
                    or_(v.c.last_updated < at, and_(v.c.last_updated == at, v.c.pk < pk))
                )
        if newer:
            stmt = stmt.order_by(v.c.last_updated.asc(), v.c.pk.asc())
        else:
            stmt = stmt.order_by(v.c.last_updated.desc(), v.c.pk.desc())
        rows = [StoredVersion(*row) for row in self.conn.execute(stmt.limit(at_most)).all()]
        return rows[::-1] if newer else rows

    def latest_version_pk(self) -> int:
        self.flush()
        return self.conn.execute(_LATEST_VERSION).scalar() or 0

    # -- writing ---------------------------------------------------------------------------------

    def insert_resource(
        self, type_: str, id_: str, version: int, when: datetime, content_hash: bytes
    ) -> int:
        """The new resource's key; its row is buffered when the key can be known first."""
        row = {
            "type": type_,
            "id": id_,
            "version": version,
            "last_updated": when,
            "content_hash": content_hash,
            "deleted": False,
        }
        if self.keys is not None:
            pk = self.keys.take(self.conn)
            self.pending_resources.append({"pk": pk, **row})
            return pk
        if not self.is_postgres:
            return _sqlite_insert(self.conn, _r, row)
        return self.conn.execute(_INSERTS[_r.name], row).inserted_primary_key[0]

    def advance(
        self,
        current: Current,
        version: int,
        when: datetime,
        deleted: bool,
        content_hash: bytes | None,
    ) -> bool:
        """Move a resource to its next version; False when another writer got there first."""
        result = self.conn.execute(
            _ADVANCE,
            {
                "_pk": current.pk,
                "_version": current.version,
                "version": version,
                "last_updated": when,
                "deleted": deleted,
                "content_hash": content_hash,
            },
        )
        return result.rowcount == 1

    def insert_version(
        self,
        resource_pk: int,
        type_: str,
        id_: str,
        version: int,
        when: datetime,
        method: str,
        body: bytes | None,
    ) -> None:
        self.pending_versions.append(
            {
                "resource_pk": resource_pk,
                "type": type_,
                "id": id_,
                "version": version,
                "last_updated": when,
                "method": method,
                "body": body,
            }
        )

    def add_index_rows(self, resource_pk: int, rows_by_table: dict[type, list[dict]]) -> None:
        for table, rows in rows_by_table.items():
            if rows:
                for row in rows:
                    row["resource_pk"] = resource_pk
                self.pending_index.setdefault(table, []).extend(rows)

    def flush(self) -> None:
        """Write the buffered rows (before a read, a search or a reindex)."""
        self._run(self._pending())

    def flush_and_commit(self, durable: bool = True) -> None:
        """Write the buffered rows and end the transaction. On PostgreSQL the COMMIT goes in
        the round trip of the rows when they are pipelined (`_run`), and the caller's commit
        then finds nothing to do; otherwise the caller commits. Not `durable`: on PostgreSQL
        the COMMIT does not wait for its WAL to reach the disk (as SQLite's commits in WAL mode
        with synchronous=NORMAL)."""
        commands = self._pending()
        if durable or not self.is_postgres or not commands:
            self._run(commands, commit=True)
            return
        self._run(commands)
        _simple_query(self.conn, "SET LOCAL synchronous_commit TO OFF; COMMIT")

    def replace_index_rows(
        self, resource_pk: int, type_: str, rows_by_table: dict[type, list[dict]]
    ) -> None:
        """The index rows of a resource replaced by `rows_by_table`. On SQLite only the rows
        that changed are deleted and inserted: a row deleted and inserted again unchanged
        still dirties its pages in every index of its table, all written to the WAL at the
        commit, and an update changes few of a resource's rows (a Patient's birth date: one
        of about forty)."""
        if self.is_postgres:
            self.clear_index(resource_pk, type_)
            self.add_index_rows(resource_pk, rows_by_table)
            return
        self.flush()
        changed: dict[type, list[dict]] = {}
        with _sqlite_cursor(self.conn) as cursor:
            for table in index_tables(type_):
                rows = rows_by_table.get(table) or []
                for row in rows:
                    row["resource_pk"] = resource_pk
                changed[table] = _sqlite_changed(cursor, table.__table__, resource_pk, rows)
        self.add_index_rows(resource_pk, changed)

    def clear_index(self, resource_pk: int, type_: str) -> None:
        """Delete the index rows of a resource, after the buffered rows went in."""
        deletes = [
            (_CLEAR_INDEX[t], _DRIVER_CLEAR[t], [{"pk": resource_pk}]) for t in index_tables(type_)
        ]
        self._run(self._pending() + deletes)

    def _pending(self) -> list[_Command]:
        """The inserts of the buffered rows, one per table (the buffers are emptied)."""
        batches: list[tuple[Table, list[dict]]] = []
        if self.pending_resources:  # first: the other rows refer to them
            batches.append((_r, self.pending_resources))
            self.pending_resources = []
        if self.pending_versions:
            batches.append((_v, self.pending_versions))
            self.pending_versions = []
        if self.pending_outbox:
            batches.append((outbox_table, self.pending_outbox))
            self.pending_outbox = []
        if self.pending_backlog:
            batches.append((backlog_table, self.pending_backlog))
            self.pending_backlog = []
        batches += [(table.__table__, rows) for table, rows in self.pending_index.items()]
        self.pending_index = {}
        # Every row of a table has the same keys, as `Connection.execute` requires.
        return [
            (_INSERTS[t.name], _driver_insert(t.name, tuple(rows[0])), rows) for t, rows in batches
        ]

    def _run(self, commands: list[_Command], commit: bool = False) -> None:
        """`commands` on PostgreSQL: inserts of one row each as one statement; else, when
        there are several or a COMMIT to send with them, in one round trip (the COMMIT with
        them); else one statement each. Where the COMMIT is not sent, the caller commits."""
        if not self.is_postgres:
            _sqlite_run(self.conn, commands)
            return
        several = len(commands) > 1 or (commit and bool(commands))
        if several and all(isinstance(c[0], Insert) and len(c[2]) == 1 for c in commands):
            _one_statement(self.conn, commands)  # the caller commits
            return
        if several and Pipeline.is_supported():
            _pipelined(self.conn, commands, commit)
            return
        for statement, _, rows in commands:
            self.conn.execute(statement, rows)

    def insert_outbox(self, rows: list[dict]) -> None:
        self.pending_outbox.extend(rows)

    def insert_backlog(self, resource_pk: int) -> None:
        """A stored resource to index later (`fhir_server.search.backlog`)."""
        self.pending_backlog.append({"resource_pk": resource_pk})


def _pipelined(conn: Connection, commands: list[_Command], commit: bool = False) -> None:
    """On PostgreSQL, several statements in one round trip (psycopg's pipeline mode) rather
    than one each: a create writes five to eight tables, an update also clears seven, and the
    COMMIT may follow them."""
    driver = conn.connection.driver_connection
    with _driver_errors(), driver.pipeline(), driver.cursor() as cursor:
        for _, sql, rows in commands:
            cursor.executemany(sql, rows)
        if commit:
            driver.commit()


def _one_statement(conn: Connection, commands: list[_Command]) -> None:
    """On PostgreSQL, inserts of one row each as one statement (all but the last in data-modifying
    CTEs): a read's AuditEvent is three, its resource, version and backlog rows. psycopg's
    pipeline costs more CPU than it saves round trips for so few rows: 0.28 ms with its COMMIT,
    where one statement and a COMMIT of its own take 0.19 to 0.21 ms."""
    shape = tuple((cast(Insert, c[0]).table.name, tuple(c[2][0])) for c in commands)
    values = {f"c{i}_{k}": v for i, (*_, rows) in enumerate(commands) for k, v in rows[0].items()}
    with _driver_errors(), conn.connection.driver_connection.cursor() as cursor:
        cursor.execute(_driver_inserts(shape), values)


def read_text(conn: Connection, sql: str) -> str | None:
    """The first value of `sql` (a query without parameters, of one text column), straight
    through the driver. On PostgreSQL, when it is the first statement of the transaction, the
    BEGIN goes with it in one simple query: psycopg would send the BEGIN in a round trip of
    its own (the server's connections keep PostgreSQL's default transactions, which a bare
    BEGIN starts). Through SQLAlchemy, with that round trip, a one-row read cost 0.2 ms."""
    driver = conn.connection.driver_connection
    if not isinstance(driver, DriverConnection):  # sqlite3
        with _sqlite_cursor(conn) as cursor:
            row = cursor.execute(sql).fetchone()
        return row[0] if row else None
    begins = driver.info.transaction_status == TransactionStatus.IDLE
    result = _simple_query(conn, f"BEGIN; {sql}" if begins else sql)
    value = result.get_value(0, 0) if result.ntuples else None
    return value.decode(driver.info.encoding) if value is not None else None


def _simple_query(conn: Connection, sql: str) -> PGresult:
    """The result of `sql` (one or several statements, no parameters) sent through libpq, in
    one round trip; its error raised as SQLAlchemy's."""
    driver = conn.connection.driver_connection
    result = driver.pgconn.exec_(sql.encode())
    with _driver_errors():
        if result.status not in (ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK):
            raise errors.error_from_result(result, encoding=driver.info.encoding)
    return result


@contextmanager
def _driver_errors() -> Iterator[None]:
    """psycopg's errors as SQLAlchemy's, as from `Connection.execute`, so that retries still
    see them."""
    try:
        yield
    except DriverError as exc:
        raise DBAPIError.instance(None, None, exc, DriverError) from exc


@contextmanager
def _sqlite_cursor(conn: Connection) -> Iterator[sqlite3.Cursor]:
    """sqlite3's cursor on the connection's transaction; its errors come out as SQLAlchemy's."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    except sqlite3.Error as exc:
        raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
    finally:
        cursor.close()


def _sqlite_run(conn: Connection, commands: list[_Command]) -> None:
    """On SQLite, each statement straight to sqlite3's `executemany`, its parameters converted
    as SQLAlchemy converts them. Through `Connection.execute`, SQLAlchemy's own work cost
    as much again as sqlite3's for these inserts: 0.13 ms of a create."""
    with _sqlite_cursor(conn) as cursor:
        for statement, _, rows in commands:
            sql, binds = _sqlite_statement(statement, tuple(rows[0]))
            cursor.executemany(sql, [_sqlite_values(binds, row) for row in rows])


def _sqlite_insert(conn: Connection, table: Table, row: dict) -> int:
    """Insert one row through sqlite3, as `_sqlite_run` does; returns its key."""
    with _sqlite_cursor(conn) as cursor:
        sql, binds = _sqlite_statement(_INSERTS[table.name], tuple(row))
        cursor.execute(sql, _sqlite_values(binds, row))
        return cursor.lastrowid


def _sqlite_changed(
    cursor: sqlite3.Cursor, table: Table, resource_pk: int, rows: list[dict]
) -> list[dict]:
    """Delete the stored rows of `resource_pk` in the index `table` that are not among `rows`;
    returns those of `rows` not stored yet. Rows compare as stored: converted as an insert
    converts them, and read back as sqlite3 gives them."""
    columns = tuple(c.name for c in table.columns if c.name != "pk")
    stored: dict[tuple, list[int]] = {}
    select_stored = f"SELECT pk, {', '.join(columns)} FROM {table.name} WHERE resource_pk = ?"
    for pk, *values in cursor.execute(select_stored, (resource_pk,)):
        stored.setdefault(tuple(values), []).append(pk)
    _, binds = _sqlite_statement(_INSERTS[table.name], columns)
    new = []
    for row in rows:
        same = stored.get(_sqlite_values(binds, row))
        if same:
            same.pop()
        else:
            new.append(row)
    stale = [(pk,) for pks in stored.values() for pk in pks]
    if stale:
        cursor.executemany(f"DELETE FROM {table.name} WHERE pk = ?", stale)
    return new


def _sqlite_values(binds: _Binds, row: dict) -> tuple:
    return tuple(
        row.get(name, default) if convert is None else convert(row.get(name, default))
        for name, convert, default in binds
    )


@cache
def _sqlite_statement(statement: Executable, columns: tuple[str, ...]) -> tuple[str, _Binds]:
    """The SQL of `statement` for sqlite3 (qmark parameters), and for each parameter in order
    its name, SQLAlchemy's conversion (UTC timestamps to text, ...) and the column's default
    (SQLAlchemy adds the columns that have one)."""
    compiled = statement.compile(dialect=_SQLITE, column_keys=list(columns))
    table = getattr(statement, "table", None)
    binds = []
    for name in compiled.positiontup or ():
        column = table.c.get(name) if table is not None else None
        default = column.default if column is not None else None
        binds.append(
            (
                name,
                compiled.binds[name].type.dialect_impl(_SQLITE).bind_processor(_SQLITE),
                default.arg if default is not None and default.is_scalar else None,
            )
        )
    return compiled.string, tuple(binds)


@cache
def _driver_insert(table: str, columns: tuple[str, ...], prefix: str = "") -> str:
    names = ", ".join(columns)
    values = ", ".join(f"%({prefix}{c})s" for c in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({values})"


@cache
def _driver_inserts(shape: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    """One statement inserting a row in each (table, columns) of `shape`, the parameters of
    the i-th named `c{i}_{column}`. Foreign keys are checked at the end of the statement."""
    *first, last = [_driver_insert(t, columns, f"c{i}_") for i, (t, columns) in enumerate(shape)]
    ctes = ", ".join(f"c{i} AS ({insert})" for i, insert in enumerate(first))
    return f"WITH {ctes} {last}" if ctes else last
