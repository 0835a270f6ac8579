"""The security of the interaction pipeline, hung on the engine's hook points so that every
door (REST, bundle entries, HL7 v2, operations) goes through it:

- BEFORE_INTERACTION: the token's scopes and the caller's roles allow the interaction on the
  type (403 otherwise); the caller's `Access` becomes the context's visibility, which the
  engine and the search apply to every read.
- BEFORE_STORAGE: the same for the write actually made (an update that creates needs `c`), the
  version replaced must be visible, the audit trail is never written, Consents say what they
  mean.
- BEFORE_COMMIT: what was written must be visible to its writer (nobody writes data about a
  patient outside their care, nor moves a resource out of it); the AuditEvents of the unit of
  work are stored, in its transaction.
- AFTER_INTERACTION / AFTER_TRANSACTION: reads are recorded, and stored after their read-only
  transaction; a refusal is stored after the rollback of what it refused.

A context without a principal is the server itself (pathway consumers, sweeps, start-up
loading): none of this applies to it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from fhir_server.engine.hooks import HookPoint
from fhir_server.engine.interaction import Context, Interaction, Kind, Outcome
from fhir_server.engine.unit_of_work import Change, UnitOfWork
from fhir_server.errors import FhirError
from fhir_server.model.registry import resource_types
from fhir_server.security import audit
from fhir_server.security.access import ACT_CODE, OPPOSITION, SHARING, Access, Mode
from fhir_server.security.principal import COORDINATOR
from fhir_server.security.relations import RELATION_TYPES, Relations
from fhir_server.security.trail import Trail
from fhir_server.storage.schema import AUDIT_TRAIL

if TYPE_CHECKING:
    from fhir_server.engine.engine import Engine
    from fhir_server.server import Server

_LETTERS = {
    Kind.READ: "r",
    Kind.VREAD: "r",
    Kind.HISTORY_INSTANCE: "r",
    Kind.SEARCH_TYPE: "s",
    Kind.SEARCH_SYSTEM: "s",
    Kind.HISTORY_TYPE: "s",
    Kind.HISTORY_SYSTEM: "s",
    Kind.CREATE: "c",
    Kind.UPDATE: "u",
    Kind.PATCH: "u",
    Kind.DELETE: "d",
}
_CHANGE_LETTERS = {"create": "c", "update": "u", "patch": "u", "delete": "d"}
_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
ENROLMENT = frozenset({"CareTeam", "CarePlan"})


def install(server: Server) -> None:
    engine, hooks, relations = server.engine, server.hooks, Relations()
    hooks.register(HookPoint.BEFORE_INTERACTION, partial(authorize, relations))
    hooks.register(HookPoint.BEFORE_STORAGE, partial(guard_write, relations))
    hooks.register(HookPoint.AFTER_INTERACTION, partial(check_versions, relations))
    hooks.register(HookPoint.AFTER_INTERACTION, record_access)
    hooks.register(HookPoint.BEFORE_COMMIT, partial(before_commit, engine, relations))
    hooks.register(HookPoint.AFTER_TRANSACTION, partial(after_transaction, engine, Trail(engine)))


def forbidden(text: str) -> FhirError:
    return FhirError.of(403, "forbidden", text)


def access_of(ctx: Context, relations: Relations) -> Access:
    """The caller's Access, made once per context."""
    access = ctx.visibility
    if not isinstance(access, Access) or access.principal is not ctx.principal:
        access = ctx.visibility = Access(ctx.principal, relations)
    return access


# -- BEFORE_INTERACTION -----------------------------------------------------------------------


def authorize(relations: Relations, ctx: Context, ix: Interaction) -> None:
    if ctx.principal is None:
        return
    access = access_of(ctx, relations)  # a transaction's conditional matches: within it
    if ix.kind in (Kind.CAPABILITIES, Kind.BATCH, Kind.TRANSACTION):
        return  # each entry is authorised on its own
    if ix.kind is Kind.OPERATION:
        if not access.operation(ix.operation or ""):
            raise forbidden(f"Your roles may not invoke ${ix.operation}")
        if ix.type is not None and access.mode(ix.type, "r") is None:
            raise forbidden(f"Your token and roles do not allow reading {ix.type}")
        return
    if ix.type == AUDIT_TRAIL and ix.is_write:
        raise forbidden(
            "The audit trail is written by the server only: it cannot be created, "
            "changed or deleted through the API"
        )
    letters = [_LETTERS[ix.kind]]
    if ix.is_write and (ix.params or ix.if_none_exist):  # conditional: a search first
        letters.append("s")
    for type_ in _types(ix):
        for letter in letters:
            mode = access.mode(type_, letter)
            if mode is None:
                raise forbidden(
                    f"Your token and roles do not allow you to {_VERBS[letter]} {type_}"
                    + (
                        " (name the types of a server-wide search with _type)"
                        if ix.kind is Kind.SEARCH_SYSTEM and not _named_types(ix)
                        else ""
                    )
                )
            if ix.kind in (Kind.HISTORY_TYPE, Kind.HISTORY_SYSTEM) and mode is not Mode.ALL:
                raise forbidden(
                    f"The history of {type_} spans patients outside your care: ask for the "
                    "history of one resource"
                )


def _named_types(ix: Interaction) -> list[str]:
    for name, value in ix.params:
        if name == "_type":
            return [t.strip() for t in value.split(",") if t.strip()]
    return []


def _types(ix: Interaction) -> list[str]:
    if ix.type is not None:
        return [ix.type]
    if ix.kind is Kind.SEARCH_SYSTEM:
        return _named_types(ix) or sorted(resource_types())
    return sorted(resource_types())  # history of the whole server


# -- BEFORE_STORAGE ---------------------------------------------------------------------------


def guard_write(relations: Relations, ctx: Context, change: Change, uow: UnitOfWork) -> None:
    if ctx.principal is None:
        return
    if change.type == AUDIT_TRAIL:
        raise forbidden("The audit trail is written by the server only")
    access = access_of(ctx, relations)
    letter = _CHANGE_LETTERS[change.interaction]
    mode = access.mode(change.type, letter)
    if mode is None:
        raise forbidden(f"Your token and roles do not allow you to {_VERBS[letter]} {change.type}")
    if mode is not Mode.ALL:
        access.before_writes(uow)  # the relation writes are judged by, before this one
        if change.previous_version is not None and change.id not in access.visible(
            uow, change.type, {change.id}
        ):
            raise forbidden(f"{change.type}/{change.id} belongs to a patient outside your care")
    if change.type == "Consent" and change.resource is not None:
        _check_consent(change.resource)
    if change.type in RELATION_TYPES:
        access.forget(uow)


def _check_consent(consent: dict[str, Any]) -> None:
    """The category of a Consent decides how the server reads it (docs/security.md): its
    provision must say the same, else it would mean one thing to people and another here."""
    codes = {
        coding.get("code")
        for category in consent.get("category") or []
        for coding in category.get("coding") or []
        if coding.get("system") == ACT_CODE
    }
    provision = consent.get("provision") or {}
    if OPPOSITION in codes and provision.get("type") != "deny":
        raise FhirError.of(
            422,
            "business-rule",
            "A Consent of category IDSCL (opposition) must deny",
            "Consent.provision.type",
        )
    if SHARING in codes and (provision.get("type") != "permit" or not provision.get("actor")):
        raise FhirError.of(
            422,
            "business-rule",
            "A Consent of category INFA (sharing) must permit, naming whom (provision.actor)",
            "Consent.provision",
        )


# -- AFTER_INTERACTION, BEFORE_COMMIT, AFTER_TRANSACTION --------------------------------------


def check_versions(
    relations: Relations, ctx: Context, uow: UnitOfWork, ix: Interaction, outcome: Outcome
) -> None:
    """A past version is judged by its own content: an Observation filed on another patient
    and then moved to one of the caller's stays hidden in its history."""
    if ctx.principal is None or ix.kind not in (Kind.VREAD, Kind.HISTORY_INSTANCE):
        return
    access = access_of(ctx, relations)
    returned = outcome.returned or [(outcome.type or "", outcome.id or "", outcome.body)]
    for type_, id_, body in returned:
        if not access.sees(uow, type_, audit.patients(type_, id_, body)):
            raise forbidden(f"A version of {type_}/{id_} belongs to a patient outside your care")


def record_access(ctx: Context, uow: UnitOfWork, ix: Interaction, outcome: Outcome) -> None:
    if ctx.principal is None or not (audit.is_read(ix.kind) or ix.kind is Kind.OPERATION):
        return
    returned = outcome.returned
    if not returned and outcome.type and outcome.id:
        returned = [(outcome.type, outcome.id, outcome.body)]
    uow.trail.append(audit.access_event(ctx, ix, returned))


def before_commit(engine: Engine, relations: Relations, ctx: Context, uow: UnitOfWork) -> None:
    if ctx.principal is None:
        return
    access = access_of(ctx, relations)
    created = {c.id for c in uow.changes if c.type == "Patient" and c.interaction == "create"}
    enrolling: dict[str, set[str]] = defaultdict(set)
    for change in uow.changes:
        if change.resource is None or access.mode(change.type, "r") is Mode.ALL:
            continue
        if change.type in ENROLMENT and COORDINATOR in ctx.principal.roles:
            # Coordinators enrol patients: their CareTeam or CarePlan must relate them.
            enrolling[change.type].add(change.id)
        elif change.type == "Patient" and change.id in created:
            # A new patient must be related to its writer by what came with it.
            if not access.visible(uow, "Patient", {change.id}):
                raise _outside_care(change)
        elif not access.writable(uow, change, created):
            raise _outside_care(change)
    for type_, ids in enrolling.items():
        hidden = ids - access.visible(uow, type_, ids)
        if hidden:
            id_ = min(hidden)
            raise _outside_care(next(c for c in uow.changes if (c.type, c.id) == (type_, id_)))

    if not (uow.write or uow.repository.is_postgres):
        return  # reads on SQLite, without its write lock: stored just after this transaction
    events = [audit.change_event(ctx, change) for change in uow.changes] + uow.trail
    for event in events:
        engine.append(uow, AUDIT_TRAIL, event)
    uow.trail = []


def _outside_care(change: Change) -> FhirError:
    error = forbidden(
        f"{change.type}/{change.id} would belong to a patient outside your care: write data of "
        "a patient you care for (a new patient comes with their CareTeam, in one transaction)"
    )
    error.interaction = Interaction(
        Kind(change.interaction), change.type, change.id, resource=change.resource
    )
    return error


def after_transaction(
    engine: Engine, trail: Trail, ctx: Context, uow: UnitOfWork, error: FhirError | None
) -> None:
    if ctx.principal is None:
        return
    reads, uow.trail = uow.trail, []
    if error is None and reads:
        trail.store(reads)
    elif error is not None and error.status == 403:
        ix = error.interaction
        _store(
            engine,
            lambda trail: [audit.refusal_event(ctx, ix, str(error), _patients_of(trail, ix))],
        )


def record_refused_token(engine: Engine, address: str | None, reason: str) -> None:
    """A request refused for its token (401) leaves a trace too, in a transaction of its own:
    who tried is unknown, from where is not."""
    _store(engine, lambda _trail: [audit.authentication_failure(address, reason)])


def _store(engine: Engine, events: Callable[[UnitOfWork], list[dict[str, Any]]]) -> None:
    """AuditEvents in a transaction of their own (`events` may read in it)."""
    with engine.unit_of_work(write=True) as trail:
        for event in events(trail):
            engine.append(trail, AUDIT_TRAIL, event)


def _patients_of(uow: UnitOfWork, ix: Interaction | None) -> set[str]:
    if ix is None or not ix.type or not ix.id:
        return set()
    stored = uow.repository.read(ix.type, ix.id)
    return audit.patients(ix.type, ix.id, stored.body if stored else None)
