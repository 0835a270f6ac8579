"""`$meta` (R4 resource-operations.html#meta): the tags, profiles and security labels of one
resource, or in use across a type or the whole server (read from the search index)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, false, select

from fhir_server.engine.interaction import Context, Interaction, Outcome
from fhir_server.engine.unit_of_work import UnitOfWork
from fhir_server.errors import gone, not_found
from fhir_server.formats.json_format import loads
from fhir_server.operations import Operation
from fhir_server.storage.schema import ResourceRow, TokenIndex, UriIndex

if TYPE_CHECKING:
    from fhir_server.engine.engine import Engine

_r, _token, _uri = ResourceRow.__table__, TokenIndex.__table__, UriIndex.__table__


def _parameters(meta: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": meta}]}


def run(engine: Engine, uow: UnitOfWork, ix: Interaction, _ctx: Context) -> Outcome:
    if ix.id is not None:
        stored = uow.repository.read(ix.type, ix.id)
        if stored is None:
            raise not_found(f"{ix.type}/{ix.id} is not known")
        if stored.body is None:
            raise gone(f"{ix.type}/{ix.id} was deleted")
        meta = loads(stored.body).get("meta", {})
        kept = {k: meta[k] for k in ("profile", "security", "tag") if k in meta}
        return Outcome(200, resource=_parameters(kept))
    live = and_(_r.c.pk == _token.c.resource_pk, _r.c.deleted == false())
    meta: dict[str, Any] = {}
    for element, code in (("tag", "_tag"), ("security", "_security")):
        stmt = (
            select(_token.c.system, _token.c.code)
            .distinct()
            .select_from(_token.join(_r, live))
            .where(_token.c.param == code, _token.c.code.is_not(None))
            .order_by(_token.c.system.nulls_first(), _token.c.code)
        )
        if ix.type:
            stmt = stmt.where(_token.c.type == ix.type)
        codings = [
            {k: v for k, v in (("system", s), ("code", c)) if v} for s, c in uow.conn.execute(stmt)
        ]
        if codings:
            meta[element] = codings
    stmt = (
        select(_uri.c.value)
        .distinct()
        .select_from(_uri.join(_r, and_(_r.c.pk == _uri.c.resource_pk, _r.c.deleted == false())))
        .where(_uri.c.param == "_profile")
        .order_by(_uri.c.value)
    )
    if ix.type:
        stmt = stmt.where(_uri.c.type == ix.type)
    profiles = list(uow.conn.execute(stmt).scalars())
    if profiles:
        meta["profile"] = profiles
    return Outcome(200, resource=_parameters(meta))


META = Operation(
    name="meta",
    definition="http://hl7.org/fhir/OperationDefinition/Resource-meta",
    run=run,
    system=True,
    type=True,
    instance=True,
)
