"""Rebuild the search index from the stored resources: after a search parameter was added or
changed, or to repair. Works in batches, each its own transaction, so it can run beside live
traffic (a resource written meanwhile is indexed by its own write). A resource of the index
backlog is indexed here and leaves the backlog."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import false, func, select

from fhir_server.formats.json_format import loads
from fhir_server.search.backlog import claim
from fhir_server.server import Server
from fhir_server.storage.schema import ResourceRow

resource = ResourceRow.__table__


def count_resources(server: Server, types: list[str] | None = None) -> int:
    stmt = select(func.count()).select_from(resource).where(resource.c.deleted == false())
    if types:
        stmt = stmt.where(resource.c.type.in_(types))
    with server.database.transaction(write=False) as conn:
        return conn.execute(stmt).scalar_one()


def reindex(
    server: Server,
    types: list[str] | None = None,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Re-extract the index rows of every current resource (of `types`); returns the count."""
    done, after = 0, 0
    while True:
        with server.engine.unit_of_work(write=True) as uow:
            stmt = (
                select(resource.c.pk)
                .where(resource.c.deleted == false(), resource.c.pk > after)
                .order_by(resource.c.pk)
                .limit(batch)
            )
            if types:
                stmt = stmt.where(resource.c.type.in_(types))
            pks = list(uow.conn.execute(stmt).scalars())
            if not pks:
                return done
            claim(uow.conn, pks)  # indexed here: no longer waiting
            for pk, stored in uow.repository.read_many(pks).items():
                uow.repository.clear_index(pk, stored.type)
                server.search.index(uow, pk, stored.type, loads(stored.body))
        done, after = done + len(pks), pks[-1]
        if progress:
            progress(len(pks))
