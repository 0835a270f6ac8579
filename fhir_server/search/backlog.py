"""The index backlog: resources stored at once and indexed behind their write, in batches.

The server's own records (AuditEvents: one per access, naming each patient it concerned) are
stored in the transaction they record, with a row in `index_backlog` in place of their index
rows (`Engine.append`). Written one event at a time, those rows cost more than most accesses
they record: a worklist's event names thirty patients, each a leaf of its own in the audit
trail's reference index, every one a page of the commit. Written later, they cost as much
CPU (their commits, batched, almost nothing), but not in the request, nor at the busy hours.

`index_backlog` writes them, one batch of events a transaction (their rows computed outside
it: a stored AuditEvent never changes), each batch claiming its events by deleting their
backlog rows, so that two indexers never write the same rows twice. It runs:

- before the transaction of any interaction that could read them (`reads_behind`), so that a
  search never misses an event committed before it began;
- in the background, once the server has been idle for `Settings.index_backlog_seconds`, or
  whenever more than `LIMIT` events wait: indexing does not compete with the requests for the
  2 cores and the write lock at the busy hours, yet an auditor's search never waits for more
  than `LIMIT` events. There, batches are smaller and the indexer rests between two as long as
  the last one held the write transaction (on SQLite the requests' writes queue behind it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, func, select

from fhir_server.engine.interaction import WRITES, Context, Interaction, Kind
from fhir_server.formats.json_format import loads
from fhir_server.storage.lists import among, key_list
from fhir_server.storage.schema import AUDIT_TRAIL, BacklogRow

if TYPE_CHECKING:
    from fhir_server.engine.engine import Engine

BEHIND = frozenset({AUDIT_TRAIL})  # the types `Engine.append` stores
BATCH = 500  # events a transaction
BACKGROUND_BATCH = 100
LIMIT = 10_000  # events waiting beyond which the background indexes, idle or not
backlog = BacklogRow.__table__
_PENDING = select(backlog.c.resource_pk).order_by(backlog.c.resource_pk)
WAITING = select(func.count()).select_from(backlog)  # how many resources wait


def claim(conn: Connection, pks: list[int]) -> list[int]:
    """Take the resources `pks` out of the backlog; returns those that were in it (another
    indexer, or a reindex, may have taken the others)."""
    taken = delete(backlog).where(among(backlog.c.resource_pk, key_list(value=pks)))
    return list(conn.execute(taken.returning(backlog.c.resource_pk)).scalars())


def index_backlog(
    engine: Engine,
    batch: int = BATCH,
    rest: bool = False,
    until: Callable[[], bool] | None = None,
) -> int:
    """Write the index rows of every resource in the backlog, `batch` a transaction, resting
    between two when `rest`, stopping between two once `until()`; returns how many."""
    done = 0
    while until is None or not until():
        with engine.unit_of_work(write=False) as uow:
            pks = list(uow.conn.execute(_PENDING.limit(batch)).scalars())
            stored = uow.repository.read_many(pks)
        if not pks:
            return done
        rows = {
            pk: engine.search.rows(version.type, loads(version.body))
            for pk, version in stored.items()
            if version.body is not None
        }
        started = time.monotonic()
        with engine.unit_of_work(write=True) as uow:
            for pk in claim(uow.conn, pks):
                uow.repository.add_index_rows(pk, rows.get(pk, {}))
                done += 1
        if rest:
            time.sleep(time.monotonic() - started)
    return done


class Backlog:
    """When one server indexes its backlog: before the reads that need it, and in the
    background when it is idle or the backlog long."""

    def __init__(self, engine: Engine, idle_seconds: float) -> None:
        self.engine = engine
        self.idle_seconds = idle_seconds
        self.busy_at = 0.0  # when the last interaction began (time.monotonic)

    def before_transaction(self, _context: Context, interactions: list[Interaction]) -> None:
        """BEFORE_TRANSACTION: the backlog indexed before a transaction that could read it."""
        self.busy_at = time.monotonic()
        if any(reads_behind(ix) for ix in interactions):
            index_backlog(self.engine)

    def in_background(self) -> int:
        """The periodic job: small batches, resting between two, when idle or too long; it
        gives way as soon as a request comes while no more than `LIMIT` events wait."""
        started = time.monotonic()
        if started - self.busy_at < self.idle_seconds and self.waiting() <= LIMIT:
            return 0

        def busy() -> bool:
            return self.busy_at > started and self.waiting() <= LIMIT

        return index_backlog(self.engine, BACKGROUND_BATCH, rest=True, until=busy)

    def waiting(self) -> int:
        with self.engine.unit_of_work(write=False) as uow:
            return uow.conn.execute(WAITING).scalar_one()


def reads_behind(ix: Interaction) -> bool:
    """Whether `ix` may read index rows of the types indexed behind (`BEHIND`): it searches
    one of them or every type, names one in a parameter (`_type`, `_has`, `_revinclude`, a
    chain's type), chains (a chain without a type may reach any), or reverse-includes every
    type (`_revinclude=*`). Conditional writes search too."""
    if ix.kind in (Kind.SEARCH_TYPE, Kind.SEARCH_SYSTEM):
        criteria = ix.params
    elif ix.kind in WRITES:
        criteria = ix.if_none_exist or (ix.params if ix.id is None else [])
        if not criteria:
            return False
    else:
        return False
    if ix.type in BEHIND or (ix.kind is Kind.SEARCH_SYSTEM and "_type" not in dict(criteria)):
        return True
    return any(
        "." in name
        or any(t in name or t in value for t in BEHIND)
        or (name.startswith("_revinclude") and value.startswith("*"))
        for name, value in criteria
    )
