"""The audit events of reads stored in groups.

On SQLite a read is audited in a write transaction of its own, just after the read, so that
reads do not take the writers' lock. Concurrent reads then queue on that lock, each for a
transaction of its own. Here whoever gets the lock first stores the events of every read queued
by then, in one transaction; the others find theirs stored when their turn comes. A group
costs one BEGIN IMMEDIATE and one commit instead of one each. A read still answers only once
its event is committed, and waits no longer than it would have in the queue.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhir_server.storage.schema import AUDIT_TRAIL

if TYPE_CHECKING:
    from fhir_server.engine.engine import Engine


@dataclass
class _Queued:
    events: list[dict[str, Any]]
    stored: bool = False
    error: Exception | None = None


class Trail:
    """Stores AuditEvents in the write transaction of a group of concurrent callers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: list[_Queued] = []
        self._lock = threading.Lock()

    def store(self, events: list[dict[str, Any]]) -> None:
        """Store `events`, with those queued beside them; raises what storing them raised."""
        queued = _Queued(events)
        with self._lock:
            self._queue.append(queued)
        with self.engine.database.writers():
            if not queued.stored:  # else a caller ahead in the queue stored it
                with self._lock:
                    group, self._queue = self._queue, []
                self._write(group)
        if queued.error is not None:
            raise queued.error

    def _write(self, group: list[_Queued]) -> None:
        try:
            with self.engine.unit_of_work(write=True) as uow:
                for queued in group:
                    for event in queued.events:
                        self.engine.append(uow, AUDIT_TRAIL, event)
        except Exception as exc:  # none of the group's events is stored: each caller fails
            for queued in group:
                queued.error = exc
        finally:
            for queued in group:
                queued.stored = True
