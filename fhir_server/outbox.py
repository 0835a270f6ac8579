"""The transactional outbox: durable after-commit work.

Every change the engine stores writes one outbox row per registered consumer, in the same
database transaction as the change: no committed change is without its events, and no event
exists for a change that rolled back. A dispatcher hands each pending row to its consumer in a
new transaction that also marks the row done, so whatever the consumer writes through the
engine commits together with that mark: a crash means a retry, never a loss nor a double
effect. On PostgreSQL rows are claimed with `FOR UPDATE SKIP LOCKED`, so several workers share
the queue; on SQLite the write lock serialises them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import ColumnElement, select, update

from fhir_server.engine.interaction import Context
from fhir_server.engine.unit_of_work import UnitOfWork
from fhir_server.engine.versioning import now
from fhir_server.errors import FhirError
from fhir_server.storage.schema import OutboxRow

if TYPE_CHECKING:
    from fhir_server.engine.engine import Engine

log = logging.getLogger(__name__)
outbox = OutboxRow.__table__


@dataclass(frozen=True)
class OutboxEvent:
    pk: int
    consumer: str
    interaction: str
    resource_type: str
    resource_id: str
    version: int
    attempts: int


class OutboxConsumer(Protocol):
    """After-commit work: `handle` runs inside the unit of work that marks the event done.
    `resource_types` are the types whose changes it handles (None: every type): no outbox row
    is written for the others, so a consumer of Encounters costs nothing to a Patient create."""

    name: str
    resource_types: frozenset[str] | None

    def handle(self, event: OutboxEvent, uow: UnitOfWork, context: Context) -> None: ...


MAX_ATTEMPTS = 10


def due(moment: datetime, max_attempts: int = MAX_ATTEMPTS) -> list[ColumnElement[bool]]:
    """The conditions of an event a dispatcher would hand out at `moment`: not done, not
    waiting for a retry, attempts left."""
    return [
        outbox.c.done_at.is_(None),
        outbox.c.available_at <= moment,
        outbox.c.attempts < max_attempts,
    ]


class OutboxDispatcher:
    def __init__(
        self,
        engine: Engine,
        consumers: list[OutboxConsumer],
        max_attempts: int = MAX_ATTEMPTS,
        retry_after: timedelta = timedelta(seconds=5),
    ) -> None:
        self.engine = engine
        self.consumers = {consumer.name: consumer for consumer in consumers}
        self.max_attempts = max_attempts
        self.retry_after = retry_after

    def run_once(self) -> int:
        """Handle every event available now; returns how many were handled."""
        handled = 0
        for consumer in self.consumers.values():
            while self._handle_next(consumer):
                handled += 1
        return handled

    def _handle_next(self, consumer: OutboxConsumer) -> bool:
        context = Context(source=f"outbox:{consumer.name}")
        claimed: list[OutboxEvent] = []

        def work(uow: UnitOfWork) -> None:
            event = self._claim(uow, consumer.name)
            if event is None:
                return
            claimed.append(event)
            consumer.handle(event, uow, context)
            uow.conn.execute(
                update(outbox)
                .where(outbox.c.pk == event.pk)
                .values(done_at=now(), attempts=event.attempts + 1)
            )

        try:
            self.engine.in_transaction(True, context, work)
        except Exception as exc:  # the consumer failed: its writes rolled back, retry later
            if not claimed:
                raise
            self._record_failure(claimed[0], exc)
        return bool(claimed)

    def _claim(self, uow: UnitOfWork, consumer: str) -> OutboxEvent | None:
        stmt = (
            select(
                outbox.c.pk,
                outbox.c.consumer,
                outbox.c.interaction,
                outbox.c.resource_type,
                outbox.c.resource_id,
                outbox.c.version,
                outbox.c.attempts,
            )
            .where(outbox.c.consumer == consumer, *due(now(), self.max_attempts))
            .order_by(outbox.c.pk)
            .limit(1)
        )
        if uow.repository.is_postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        row = uow.conn.execute(stmt).first()
        return OutboxEvent(*row) if row else None

    def _record_failure(self, event: OutboxEvent, exc: Exception) -> None:
        # Only the kind of failure is kept: messages may quote patient data.
        reason = type(exc).__name__
        if isinstance(exc, FhirError):
            reason += ": " + ", ".join(f"{i.code}" for i in exc.issues)
        log.warning("outbox event %s for %s failed (%s)", event.pk, event.consumer, reason)
        with self.engine.database.transaction(write=True) as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.pk == event.pk)
                .values(
                    attempts=event.attempts + 1,
                    last_error=reason,
                    available_at=now() + self.retry_after * (2 ** min(event.attempts, 8)),
                )
            )


class OutboxWorker:
    """A dispatcher polling in a background thread (the embedded default; production runs the
    `worker` command instead)."""

    def __init__(self, dispatcher: OutboxDispatcher, poll_seconds: float = 1.0) -> None:
        self.dispatcher = dispatcher
        self.poll_seconds = poll_seconds
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="outbox", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.dispatcher.run_once()
            except Exception:
                log.exception("outbox dispatcher failed")
            self.wake.wait(self.poll_seconds)
            self.wake.clear()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join(10)
