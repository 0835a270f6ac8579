"""The journal of inbound messages: every message a door receives (HL7 v2 over MLLP or HTTP,
MSSanté mail, ...), kept raw with the response it got, inside the unit of work of the changes
it caused. A message received again under the same (door, sender, control id) is found here
and answered with the same response instead of running twice; the retention of each door
bounds how long entries are kept (`purge`).

The journal knows nothing of message formats: doors give it bytes, keys and an outcome.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from fhir_server.storage.schema import InboundMessageRow

ACCEPTED = "accepted"  # processed, its changes committed with this entry
ERROR = "error"  # refused for its content: nothing else was stored
REJECTED = "rejected"  # not a message the door supports (type, version, framing)

_journal = InboundMessageRow.__table__


@dataclass(frozen=True, slots=True)
class JournalEntry:
    pk: int
    door: str
    sender: str
    control_id: str | None
    received_at: datetime
    message_type: str
    raw: bytes
    response: bytes | None
    outcome: str


_COLUMNS = (
    _journal.c.pk,
    _journal.c.door,
    _journal.c.sender,
    _journal.c.control_id,
    _journal.c.received_at,
    _journal.c.message_type,
    _journal.c.raw,
    _journal.c.response,
    _journal.c.outcome,
)


def find(conn: Connection, door: str, sender: str, control_id: str) -> JournalEntry | None:
    """The entry of an earlier message with this key, if any."""
    row = conn.execute(
        select(*_COLUMNS).where(
            _journal.c.door == door,
            _journal.c.sender == sender,
            _journal.c.control_id == control_id,
        )
    ).first()
    return JournalEntry(*row) if row else None


def record(
    conn: Connection,
    door: str,
    sender: str,
    control_id: str | None,
    received_at: datetime,
    message_type: str,
    raw: bytes,
    response: bytes | None,
    outcome: str,
) -> None:
    """Keep a message with its response. An earlier entry under the same key is replaced (a
    message refused before and sent again); two concurrent insertions of one key fail on the
    unique key, so the unit of work of the second is retried and finds the first."""
    values = {
        "received_at": received_at,
        "message_type": message_type,
        "raw": raw,
        "response": response,
        "outcome": outcome,
    }
    if control_id is not None:
        replaced = conn.execute(
            update(_journal)
            .where(
                _journal.c.door == door,
                _journal.c.sender == sender,
                _journal.c.control_id == control_id,
            )
            .values(**values)
        )
        if replaced.rowcount:
            return
    conn.execute(insert(_journal).values(door=door, sender=sender, control_id=control_id, **values))


def entries(
    conn: Connection, door: str, since: datetime, outcomes: Collection[str] | None = None
) -> list[JournalEntry]:
    """The entries of a door received since `since`, of the given outcomes (all when None),
    oldest first: what a replay receives again, what an audit reads."""
    stmt = select(*_COLUMNS).where(_journal.c.door == door, _journal.c.received_at >= since)
    if outcomes is not None:
        stmt = stmt.where(_journal.c.outcome.in_(list(outcomes)))
    return [JournalEntry(*row) for row in conn.execute(stmt.order_by(_journal.c.pk))]


def purge(conn: Connection, door: str, before: datetime) -> int:
    """Forget the entries of a door received before `before`; returns how many."""
    result = conn.execute(
        delete(_journal).where(_journal.c.door == door, _journal.c.received_at < before)
    )
    return result.rowcount
