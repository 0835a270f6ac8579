"""Professionals' relations to patients, kept between requests.

Reading a caller's relation (their PractitionerRoles, then the related and the opposing
patients) is two queries, done for every request that a professional makes. The patients
barely change between two requests of the same caller, so each process keeps them, keyed by
the caller and valid while the **relation epoch** is unchanged: a value in `server_state`
that every transaction changing a relation replaces, in that transaction, with a new one:

- any write of a CareTeam, a Consent or a PractitionerRole;
- a Task or a CarePlan created or deleted, or whose patient, owner, requester or author
  changed (a Task's status does not change anyone's relation).

A request reads the epoch (one primary-key read) and uses the kept patients if they were read
at that epoch, else reads them and keeps them. A rolled-back change never commits its epoch,
so nothing read in it is ever used again. Kept patients also expire after `TTL` seconds:
consents start and end with time, without any write.
"""

from __future__ import annotations

import uuid
from typing import Any

from cachetools import TTLCache
from sqlalchemy import Connection, text

from fhir_server.caches import Kept
from fhir_server.engine.unit_of_work import Change, UnitOfWork
from fhir_server.storage.repository import read_text

EPOCH = "relation-epoch"
TTL = 60.0  # seconds: how late a consent's start or end may apply
RELATION_TYPES = frozenset({"CareTeam", "Task", "CarePlan", "Consent", "PractitionerRole"})
# The elements of a Task or a CarePlan that relate someone to its patient.
_RELATING = {"Task": ("for", "owner", "requester"), "CarePlan": ("subject", "author")}
_READ = f"SELECT value FROM server_state WHERE key = '{EPOCH}'"
_BUMP = text(
    "INSERT INTO server_state (key, value) VALUES (:key, :value) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)

Patients = tuple[list[str], list[str]]


def epoch(conn: Connection) -> str:
    """The first read of a professional's request: straight through the driver, with the
    transaction's BEGIN on PostgreSQL (`read_text`)."""
    return read_text(conn, _READ) or ""


def changes_relation(change: Change) -> bool:
    if change.type not in RELATION_TYPES:
        return False
    relating = _RELATING.get(change.type)
    if relating is None or change.resource is None or change.previous_version is None:
        return True  # a CareTeam, a Consent, a PractitionerRole; any creation or deletion
    previous = change.previous or {}
    return any(change.resource.get(key) != previous.get(key) for key in relating)


def bump(uow: UnitOfWork) -> None:
    """BEFORE_COMMIT: a new epoch when the unit of work changed a relation."""
    if any(changes_relation(change) for change in uow.changes):
        uow.conn.execute(_BUMP, {"key": EPOCH, "value": str(uuid.uuid4())})


class Relations:
    """The patients of each caller read at an epoch, for one server's database: the most
    recently used `size` callers, each for `TTL` seconds at most."""

    def __init__(self, size: int = 10_000) -> None:
        self._kept: Kept[Any, tuple[str, Patients]] = Kept(TTLCache(size, TTL))

    def get(self, caller: Any, at: str) -> Patients | None:
        kept = self._kept.get(caller)
        return kept[1] if kept is not None and kept[0] == at else None

    def put(self, caller: Any, at: str, patients: Patients) -> None:
        self._kept.put(caller, (at, patients))
