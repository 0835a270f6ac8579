"""Resource repository: the SQL behind each interaction, on one open connection (one database
transaction). SQLAlchemy Core, not the ORM: these statements are the server's hot path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from fhir_server.storage.schema import INDEX_TABLES, OutboxRow, ResourceRow, VersionRow

resource_table = ResourceRow.__table__
version_table = VersionRow.__table__
outbox_table = OutboxRow.__table__


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
    def __init__(self, conn: Connection, is_postgres: bool) -> None:
        self.conn = conn
        self.is_postgres = is_postgres

    # -- reading ---------------------------------------------------------------------------------

    def current(self, type_: str, id_: str, for_update: bool = False) -> Current | None:
        stmt = select(
            resource_table.c.pk,
            resource_table.c.version,
            resource_table.c.last_updated,
            resource_table.c.deleted,
            resource_table.c.content_hash,
        ).where(resource_table.c.type == type_, resource_table.c.id == id_)
        if for_update and self.is_postgres:
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt).first()
        return Current(*row) if row else None

    def read(self, type_: str, id_: str) -> StoredVersion | None:
        """The current version (possibly a deletion) of a resource."""
        r, v = resource_table, version_table
        stmt = (
            select(v.c.pk, v.c.type, v.c.id, v.c.version, v.c.last_updated, v.c.method, v.c.body)
            .select_from(r.join(v, and_(v.c.resource_pk == r.c.pk, v.c.version == r.c.version)))
            .where(r.c.type == type_, r.c.id == id_)
        )
        row = self.conn.execute(stmt).first()
        return StoredVersion(*row) if row else None

    def read_version(self, type_: str, id_: str, version: int) -> StoredVersion | None:
        v = version_table
        stmt = select(
            v.c.pk, v.c.type, v.c.id, v.c.version, v.c.last_updated, v.c.method, v.c.body
        ).where(v.c.type == type_, v.c.id == id_, v.c.version == version)
        row = self.conn.execute(stmt).first()
        return StoredVersion(*row) if row else None

    def read_many(self, pks: Sequence[int]) -> dict[int, StoredVersion]:
        """Current versions by resource pk (search results, includes); here `pk` of each
        StoredVersion is the resource's pk, not the version's."""
        if not pks:
            return {}
        r, v = resource_table, version_table
        stmt = (
            select(r.c.pk, v.c.type, v.c.id, v.c.version, v.c.last_updated, v.c.method, v.c.body)
            .select_from(r.join(v, and_(v.c.resource_pk == r.c.pk, v.c.version == r.c.version)))
            .where(r.c.pk.in_(pks))
        )
        return {row[0]: StoredVersion(*row) for row in self.conn.execute(stmt)}

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
        v = version_table
        stmt = select(v.c.pk, v.c.type, v.c.id, v.c.version, v.c.last_updated, v.c.method, v.c.body)
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
        rows = [StoredVersion(*row) for row in self.conn.execute(stmt.limit(at_most))]
        return rows[::-1] if newer else rows

    def latest_version_pk(self) -> int:
        return (
            self.conn.execute(
                select(version_table.c.pk).order_by(version_table.c.pk.desc()).limit(1)
            ).scalar()
            or 0
        )

    # -- writing ---------------------------------------------------------------------------------

    def insert_resource(
        self, type_: str, id_: str, version: int, when: datetime, content_hash: bytes
    ) -> int:
        result = self.conn.execute(
            insert(resource_table).values(
                type=type_,
                id=id_,
                version=version,
                last_updated=when,
                deleted=False,
                content_hash=content_hash,
            )
        )
        return result.inserted_primary_key[0]

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
            update(resource_table)
            .where(resource_table.c.pk == current.pk, resource_table.c.version == current.version)
            .values(version=version, last_updated=when, deleted=deleted, content_hash=content_hash)
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
        self.conn.execute(
            insert(version_table).values(
                resource_pk=resource_pk,
                type=type_,
                id=id_,
                version=version,
                last_updated=when,
                method=method,
                body=body,
            )
        )

    def clear_index(self, resource_pk: int) -> None:
        for table in INDEX_TABLES:
            self.conn.execute(delete(table.__table__).where(table.resource_pk == resource_pk))

    def insert_outbox(self, rows: list[dict]) -> None:
        if rows:
            self.conn.execute(insert(outbox_table), rows)
