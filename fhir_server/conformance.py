"""Conformance resources the server ships (profiles/): stored as ordinary resources at start-up
so that they can be read and searched like any other (`GET /SearchParameter?base=Task`), and
served read-only: no door may change them. The OperationDefinitions of `profiles/
operation-definitions/` describe the operations whose parameters are the project's own; the
CapabilityStatement points at them (`Operation.definition`).

The base R4 SearchParameters are rebuilt from the compact table (the full definitions stay in
the official package); the project's own are shipped as authored. A fingerprint of the whole set
is kept in `server_state`, so start-up writes nothing when nothing changed.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select

from fhir_server.engine.hooks import HookPoint
from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.engine.unit_of_work import Change, UnitOfWork
from fhir_server.errors import FhirError
from fhir_server.search.parameters import Registry
from fhir_server.storage.schema import StateRow
from fhir_server.validation.structure_definitions import load_folder
from profiles import PROFILES_DIR

if TYPE_CHECKING:
    from fhir_server.server import Server

READ_ONLY_TYPES = frozenset({"OperationDefinition", "SearchParameter", "StructureDefinition"})
SOURCE = "conformance"
_STATE_KEY = "conformance-fingerprint"
_state = StateRow.__table__


def search_parameter_resources(registry: Registry) -> list[dict[str, Any]]:
    """Every search parameter the server knows, as SearchParameter resources."""
    by_url: dict[str, dict[str, Any]] = {}
    for params in registry.by_url.values():
        param = params[0]
        bases = sorted({p.resource_type for p in params})
        if param.url.startswith("http://hl7.org/fhir/SearchParameter/"):
            by_url[param.url] = _base_resource(param.url, param.code, param.type, params, bases)
    for custom in registry.definitions:
        by_url[custom["url"]] = custom
    return [by_url[url] for url in sorted(by_url)]


def _base_resource(
    url: str, code: str, type_: str, params: list, bases: list[str]
) -> dict[str, Any]:
    first = params[0]
    expressions = sorted({p.expression for p in params})
    common = url.rsplit("/", 1)[1].startswith("Resource-")  # on every resource type
    resource: dict[str, Any] = {
        "resourceType": "SearchParameter",
        "id": url.rsplit("/", 1)[1],
        "url": url,
        "version": "4.0.1",
        "name": code,
        "status": "active",
        "description": f"FHIR R4 base search parameter {code!r} "
        f"({'every resource' if common else ', '.join(bases)})",
        "code": code,
        "base": ["Resource"] if common else bases,
        "type": type_,
        "expression": f"Resource.{expressions[0].split('.', 1)[1]}"
        if common
        else " | ".join(expressions),
    }
    if first.target:
        resource["target"] = list(first.target)
    if first.component:
        resource["component"] = [
            {"definition": c.definition, "expression": c.expression} for c in first.component
        ]
    return resource


def operation_definitions() -> list[dict[str, Any]]:
    """The OperationDefinitions shipped in profiles/ (operations with parameters of their own)."""
    return load_folder(PROFILES_DIR / "operation-definitions", "OperationDefinition")


def conformance_resources(server: Server) -> list[dict[str, Any]]:
    """Everything the server ships to serve: search parameters, profiles, value sets, code
    systems, operation definitions."""
    validator = server.validation.validator
    return [
        *search_parameter_resources(server.search.registry),
        *validator.structure_definitions(),
        *validator.value_sets(),
        *validator.code_systems(),
        *operation_definitions(),
    ]


def load_conformance(server: Server) -> int:
    """Store the shipped conformance resources when they changed; returns how many were
    (re)written, 0 when the database already holds this exact set."""
    resources = conformance_resources(server)
    fingerprint = hashlib.sha256(orjson.dumps(resources, option=orjson.OPT_SORT_KEYS)).hexdigest()
    with server.database.transaction(write=False) as conn:
        stored = conn.execute(select(_state.c.value).where(_state.c.key == _STATE_KEY)).scalar()
    if stored == fingerprint:
        return 0
    context = Context(source=SOURCE)

    def work(uow: Any) -> None:
        for resource in resources:
            server.engine.run(
                uow,
                Interaction(
                    Kind.UPDATE, resource["resourceType"], resource["id"], resource=resource
                ),
                context,
            )
        uow.conn.execute(_state.delete().where(_state.c.key == _STATE_KEY))
        uow.conn.execute(_state.insert().values(key=_STATE_KEY, value=fingerprint))

    server.engine.in_transaction(True, context, work)
    return len(resources)


def refuse_changes(context: Context, interaction: Interaction) -> None:
    """BEFORE_INTERACTION hook: search parameters, profiles and operation definitions are the
    server's own (a new one would be stored but never enforced or implemented), so no door may
    write them."""
    if interaction.is_write and interaction.type in READ_ONLY_TYPES and context.source != SOURCE:
        raise FhirError.of(
            405, "not-supported", f"{interaction.type} resources are read-only on this server"
        )


class ShippedResources:
    """BEFORE_STORAGE hook: the value sets and code systems shipped in profiles/ cannot be
    changed or deleted; other value sets and code systems are ordinary data."""

    def __init__(self, server: Server) -> None:
        self.keys = {(r["resourceType"], r["id"]) for r in conformance_resources(server)}

    def __call__(self, context: Context, change: Change, _uow: UnitOfWork) -> None:
        if (change.type, change.id) in self.keys and context.source != SOURCE:
            raise FhirError.of(
                405,
                "not-supported",
                f"{change.type}/{change.id} is shipped with the server and read-only",
            )


def install(server: Server) -> None:
    server.hooks.register(HookPoint.BEFORE_INTERACTION, refuse_changes)
    server.hooks.register(HookPoint.BEFORE_STORAGE, ShippedResources(server))
