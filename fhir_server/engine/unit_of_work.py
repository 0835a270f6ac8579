"""A unit of work: one database transaction through which one or many interactions run (a
single REST call, a whole transaction Bundle, an HL7 message, an outbox event's handling)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Connection

from fhir_server.formats.json_format import loads
from fhir_server.storage.keys import ResourceKeys
from fhir_server.storage.repository import Repository


@dataclass
class Change:
    """A version being written: what BEFORE_STORAGE hooks inspect and AFTER_COMMIT hooks get."""

    interaction: str  # create, update, patch or delete
    type: str
    id: str
    version: int
    last_updated: datetime
    resource: dict[str, Any] | None  # the new content; None for a delete
    previous_version: int | None = None
    repository: Repository | None = field(default=None, repr=False, compare=False)
    # The version the request's If-Match named: the write was conditional on it.
    if_match: str | None = None
    # The search index rows of the new content (table class → rows), once it is stored.
    index: dict[type, list[dict]] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def previous(self) -> dict[str, Any] | None:
        """The content before this change (None for a creation), read on first use: only
        inside the unit of work, not from AFTER_COMMIT hooks."""
        if self.previous_version is None or self.repository is None:
            return None
        stored = self.repository.read_version(self.type, self.id, self.previous_version)
        return loads(stored.body) if stored and stored.body else None


class UnitOfWork:
    def __init__(
        self,
        conn: Connection,
        is_postgres: bool,
        write: bool = True,
        keys: ResourceKeys | None = None,
    ) -> None:
        self.conn = conn
        self.write = write  # whether the transaction may write (SQLite: holds the write lock)
        self.repository = Repository(conn, is_postgres, keys)
        self.changes: list[Change] = []
        # Resources written in this unit of work, for a transaction's overlap check.
        self.touched: set[tuple[str, str]] = set()
        # AuditEvents of the accesses made in this unit of work, stored before it commits
        # (or, for reads and refusals, just after).
        self.trail: list[dict[str, Any]] = []
