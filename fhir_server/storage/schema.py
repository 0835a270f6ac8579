"""Database schema, in the shape HAPI FHIR proved: one row per resource (its current state),
one row per version (the JSON body), one index table per search-parameter type, and the
transactional outbox. The same schema serves SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
PrimaryKey = BigInteger().with_variant(Integer(), "sqlite")


def Ordered(length: int) -> String:
    """Strings compared byte-wise (collation "C" on PostgreSQL, SQLite's default), so that a
    prefix search is an index range scan `value >= 'abc' AND value < 'abd'`."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always returned timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if getattr(dialect, "name", "") == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class ResourceRow(Base):
    """The current state of one logical resource, deleted or not."""

    __tablename__ = "resource"
    pk: Mapped[int] = mapped_column(PrimaryKey, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(64))
    id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(UtcDateTime())
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # SHA-256 of the content without meta.versionId/lastUpdated: an unchanged update is a no-op.
    content_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)

    __table_args__ = (
        UniqueConstraint("type", "id"),
        Index(None, "type", "last_updated"),
    )


class VersionRow(Base):
    """Every version of every resource; `body` is the stored FHIR JSON (NULL for a delete)."""

    __tablename__ = "resource_version"
    pk: Mapped[int] = mapped_column(PrimaryKey, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = mapped_column(ForeignKey("resource.pk"))
    type: Mapped[str] = mapped_column(String(64))
    id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(UtcDateTime())
    method: Mapped[str] = mapped_column(String(8))  # POST, PUT, PATCH or DELETE
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    __table_args__ = (
        UniqueConstraint("resource_pk", "version"),
        Index(None, "last_updated"),
        Index(None, "type", "last_updated"),
    )


class _IndexColumns:
    """Columns every search-index row has: the resource it belongs to and the parameter code.
    Each table indexes `resource_pk` (a resource's rows: reindexing, includes). The token,
    reference and date tables lead that index with the parameter and its values, so that
    what a search checks per candidate (a status, the patients of a resource for visibility,
    the due date to sort on) is read from the index alone."""

    pk: Mapped[int] = mapped_column(PrimaryKey, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = mapped_column(ForeignKey("resource.pk"))
    type: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(100))
    # For a component of a composite parameter (param "code$k"): which element instance the
    # value came from, so that all components of one match come from the same element.
    composite: Mapped[int | None] = mapped_column(Integer, nullable=True)


class StringIndex(_IndexColumns, Base):
    __tablename__ = "search_string"
    value_normalized: Mapped[str] = mapped_column(Ordered(255))  # lower case, accents removed
    value_exact: Mapped[str] = mapped_column(String(255))
    __table_args__ = (
        # `:exact` is found through the normalized value (search/sql.py): an index of the
        # exact text would cost each string written one more random index insertion.
        Index(None, "type", "param", "value_normalized"),
        Index(None, "resource_pk"),
    )


class TokenIndex(_IndexColumns, Base):
    __tablename__ = "search_token"
    system: Mapped[str | None] = mapped_column(String(255), nullable=True)
    code: Mapped[str | None] = mapped_column(String(255), nullable=True)
    text_normalized: Mapped[str | None] = mapped_column(Ordered(255), nullable=True)
    # Identifier.type for :of-type
    type_system: Mapped[str | None] = mapped_column(String(255), nullable=True)
    type_code: Mapped[str | None] = mapped_column(String(255), nullable=True)
    __table_args__ = (
        Index(None, "type", "param", "code", "system"),
        Index(None, "resource_pk", "param", "code"),
    )


class _ReferenceColumns:
    target_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    url: Mapped[str | None] = mapped_column(String(512), nullable=True)  # absolute or canonical
    identifier_system: Mapped[str | None] = mapped_column(String(255), nullable=True)
    identifier_value: Mapped[str | None] = mapped_column(String(255), nullable=True)


_HAS_URL = text("url IS NOT NULL")


class ReferenceIndex(_IndexColumns, _ReferenceColumns, Base):
    """A reference's url index holds only the rows that have one (2 % of the benchmark's):
    a search by url implies it, and the other rows cost no insertion there."""

    __tablename__ = "search_reference"
    __table_args__ = (
        Index(None, "type", "param", "target_id", "target_type"),
        Index(None, "target_type", "target_id"),
        Index(None, "type", "param", "url", sqlite_where=_HAS_URL, postgresql_where=_HAS_URL),
        Index(None, "resource_pk", "param", "target_type", "target_id"),
    )


class AuditReferenceIndex(_IndexColumns, _ReferenceColumns, Base):
    """The references of the audit trail, apart from those of the clinical data: every access
    writes an AuditEvent naming each patient concerned (a worklist page names tens), so that
    the trail soon holds most references of a server. Kept apart, it does not weigh on the
    clinical searches, and each row costs one random index insertion instead of two to three:
    its searches name a target (`patient`, `entity`, `agent`), which (target_id, target_type)
    serves, as it serves `_revinclude`."""

    __tablename__ = "search_audit_reference"
    __table_args__ = (Index(None, "target_id", "target_type"), Index(None, "resource_pk"))


class DateIndex(_IndexColumns, Base):
    __tablename__ = "search_date"
    low: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    high: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    __table_args__ = (
        Index(None, "type", "param", "low", "high"),
        Index(None, "resource_pk", "param", "low", "high"),
    )


class NumberIndex(_IndexColumns, Base):
    __tablename__ = "search_number"
    value: Mapped[float] = mapped_column(Numeric(38, 12))
    __table_args__ = (Index(None, "type", "param", "value"), Index(None, "resource_pk"))


class QuantityIndex(_IndexColumns, Base):
    __tablename__ = "search_quantity"
    value: Mapped[float] = mapped_column(Numeric(38, 12))
    system: Mapped[str | None] = mapped_column(String(255), nullable=True)
    code: Mapped[str | None] = mapped_column(String(255), nullable=True)
    __table_args__ = (Index(None, "type", "param", "value"), Index(None, "resource_pk"))


class UriIndex(_IndexColumns, Base):
    __tablename__ = "search_uri"
    value: Mapped[str] = mapped_column(Ordered(512))
    __table_args__ = (Index(None, "type", "param", "value"), Index(None, "resource_pk"))


INDEX_TABLES = (
    StringIndex,
    TokenIndex,
    ReferenceIndex,
    AuditReferenceIndex,
    DateIndex,
    NumberIndex,
    QuantityIndex,
    UriIndex,
)
AUDIT_TRAIL = "AuditEvent"  # written by the server alone, when it audits (fhir_server.security)


def reference_index(type_: str) -> type[ReferenceIndex] | type[AuditReferenceIndex]:
    """The table of the reference index rows of resources of `type_`."""
    return AuditReferenceIndex if type_ == AUDIT_TRAIL else ReferenceIndex


def index_tables(type_: str) -> tuple[type, ...]:
    """The index tables that hold rows of resources of `type_`."""
    other = ReferenceIndex if type_ == AUDIT_TRAIL else AuditReferenceIndex
    return tuple(t for t in INDEX_TABLES if t is not other)


class BacklogRow(Base):
    """A resource stored whose index rows are not written yet: the server's own records
    (AuditEvents) are indexed behind their writes, in batches (`fhir_server.search.backlog`)."""

    __tablename__ = "index_backlog"
    resource_pk: Mapped[int] = mapped_column(
        PrimaryKey, ForeignKey("resource.pk"), primary_key=True, autoincrement=False
    )


class StateRow(Base):
    """Small facts the server keeps about itself, e.g. the fingerprint of the conformance
    resources loaded from profiles/, so that start-up reloads them only when they changed."""

    __tablename__ = "server_state"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class OutboxRow(Base):
    """One committed change for one after-commit consumer, written in the change's transaction."""

    __tablename__ = "outbox"
    pk: Mapped[int] = mapped_column(PrimaryKey, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    interaction: Mapped[str] = mapped_column(String(16))  # create, update, patch, delete
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    __table_args__ = (Index(None, "consumer", "done_at", "available_at"),)


class InboundMessageRow(Base):
    """One message a door received (HL7 v2, MSSanté, ...), kept raw with the response it got
    and its outcome: a message sent again under the same control id is answered from here
    without running twice, and the journal serves replay and audit until its retention ends.
    `control_id` is NULL when the message carried none (kept, but never matched)."""

    __tablename__ = "inbound_message"
    pk: Mapped[int] = mapped_column(PrimaryKey, primary_key=True, autoincrement=True)
    door: Mapped[str] = mapped_column(String(32))
    sender: Mapped[str] = mapped_column(String(255))
    control_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    message_type: Mapped[str] = mapped_column(String(64))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    response: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))  # accepted, error or rejected
    __table_args__ = (
        UniqueConstraint("door", "sender", "control_id"),
        Index(None, "door", "received_at"),
    )
