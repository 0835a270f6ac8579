"""Reads and searches run through the engine inside a unit of work: what plugins (outbox
consumers, operations, adapters) do to look at stored resources, through the same hooks
as any door."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from fhir_server.engine.interaction import Context, Interaction, Kind, Outcome, Params
from fhir_server.engine.unit_of_work import UnitOfWork
from fhir_server.errors import FhirError
from fhir_server.formats.json_format import dumps, loads
from fhir_server.search.criteria import escape

if TYPE_CHECKING:
    from fhir_server.engine.engine import Engine


def read(engine: Engine, uow: UnitOfWork, ctx: Context, reference: str | None) -> dict | None:
    """The current content of `Type/id`, None when unknown or deleted."""
    type_, _, id_ = (reference or "").partition("/")
    if not id_ or "/" in id_:
        return None
    try:
        outcome = engine.run(uow, Interaction(Kind.READ, type_, id_), ctx)
    except FhirError as exc:
        if exc.status in (404, 410):
            return None
        raise
    return loads(outcome.body)


def search_page(
    engine: Engine, uow: UnitOfWork, ctx: Context, type_: str, criteria: Params, page: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a search run through the engine, and the token of the next page."""
    params = [*criteria, ("_total", "none")] + ([("_page", page)] if page else [])
    outcome = engine.run(uow, Interaction(Kind.SEARCH_TYPE, type_, params=params, strict=True), ctx)
    bundle = outcome.resource or {}
    found = [
        loads(dumps(entry["resource"]))
        for entry in bundle.get("entry", [])
        if entry.get("search", {}).get("mode") == "match"
    ]
    following = next(
        (link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None
    )
    return found, parse_qs(urlsplit(following).query)["_page"][0] if following else None


def search(
    engine: Engine, uow: UnitOfWork, ctx: Context, type_: str, criteria: Params
) -> Iterator[dict[str, Any]]:
    """Every match of a search, page after page."""
    page: str | None = None
    while True:
        found, page = search_page(engine, uow, ctx, type_, criteria, page)
        yield from found
        if page is None:
            return


def create_once(engine: Engine, uow: UnitOfWork, ctx: Context, resource: dict) -> Outcome:
    """Create `resource` unless one with its (first) identifier exists: a conditional create,
    so that an event handled twice or two workers racing create it once."""
    identifier = resource["identifier"][0]
    criteria = [("identifier", f"{identifier['system']}|{escape(identifier['value'])}")]
    return engine.run(
        uow,
        Interaction(
            Kind.CREATE, resource["resourceType"], resource=resource, if_none_exist=criteria
        ),
        ctx,
    )
