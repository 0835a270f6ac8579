"""The audit trail: one AuditEvent per access to data (read, search, history, operation,
write) and per refusal, in the manner of IHE BALP (Basic Audit Log Patterns).

Each event says who (the agent: the user's Practitioner or the system client, its roles and
network address, the token id), what (the resources written or read and the patients they
belong to; for a search, the query), when, from which door, with what outcome and for what
purpose. It never holds a resource's content.

Writes are audited in their own transaction, before it commits: no change without its trail.
Reads are audited in their transaction on PostgreSQL, just after it on SQLite (a read does not
take its write lock), before the response leaves; refusals
after the rollback of the work they refused.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any

from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.engine.unit_of_work import Change
from fhir_server.engine.versioning import instant, now
from fhir_server.formats.json_format import dumps
from fhir_server.security.principal import ADMIN, AUDITOR, COORDINATOR, Principal

EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
PURPOSE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CLIENT_SYSTEM = "urn:cpts-fhir:client"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"

SUCCESS, MINOR_FAILURE = "0", "4"
_ACTIONS = {"create": "C", "update": "U", "patch": "U", "delete": "D"}
_READ_KINDS = {
    Kind.READ,
    Kind.VREAD,
    Kind.SEARCH_TYPE,
    Kind.SEARCH_SYSTEM,
    Kind.HISTORY_INSTANCE,
    Kind.HISTORY_TYPE,
    Kind.HISTORY_SYSTEM,
}
# References to a Patient in stored JSON, relative or absolute.
_PATIENT_REFERENCE = re.compile(rb'"reference"\s*:\s*"(?:[^"]*/)?Patient/([A-Za-z0-9\-.]{1,64})"')


def patients(type_: str, id_: str, body: bytes | None) -> set[str]:
    """The patients a stored resource is about: itself for a Patient, else those it refers to.
    Read from the JSON bytes: no parsing on the path of every search."""
    return _concerned([(type_, id_, body)])


def _concerned(stored: list[tuple[str, str, bytes | None]]) -> set[str]:
    """The patients of all the `stored` resources (type, id, body), in one scan of their
    bodies joined (a page is tens of resources; a reference cannot span two JSON objects)."""
    joined = b"".join(body or b"" for *_, body in stored)
    found = {m.decode() for m in _PATIENT_REFERENCE.findall(joined)}
    found.update(id_ for type_, id_, _ in stored if type_ == "Patient")
    return found


def access_event(
    ctx: Context, ix: Interaction, returned: Iterable[tuple[str, str, bytes | None]]
) -> dict[str, Any]:
    """The event of a read, search, history or operation that returned `returned`."""
    entities: list[dict[str, Any]] = []
    stored = list(returned)
    concerned = _concerned(stored)
    if ix.kind in (Kind.READ, Kind.VREAD):
        entities += [_resource(type_, id_) for type_, id_, _ in stored]
    if ix.kind is Kind.HISTORY_INSTANCE and ix.type and ix.id:
        entities.append(_resource(ix.type, ix.id))
    if ix.params and ix.kind not in (Kind.READ, Kind.VREAD):
        entities.append(_query(ix))
    if ix.kind is Kind.OPERATION:
        entities.append(_operation(ix))
    action = "E" if ix.kind is Kind.OPERATION else "R"
    return event(ctx, ix.kind.value, action, SUCCESS, entities, concerned)


def change_event(ctx: Context, change: Change) -> dict[str, Any]:
    """The event of one version written (or a deletion)."""
    if change.resource is not None:
        body = dumps(change.resource)
    else:
        previous = change.previous
        body = dumps(previous) if previous else None
    concerned = patients(change.type, change.id, body)
    entity = _resource(change.type, change.id, change.version)
    return event(
        ctx, change.interaction, _ACTIONS[change.interaction], SUCCESS, [entity], concerned
    )


def refusal_event(
    ctx: Context, ix: Interaction | None, reason: str, concerned: set[str]
) -> dict[str, Any]:
    """The event of a refused interaction: what was asked, why it was refused, and the
    patients it would have reached (`concerned`: those of the stored resource)."""
    entities: list[dict[str, Any]] = []
    concerned = set(concerned)
    if ix is not None and ix.kind is Kind.OPERATION:
        entities.append(_operation(ix))
    if ix is not None and ix.type and ix.id:
        entities.append(_resource(ix.type, ix.id))
        if ix.type == "Patient":
            concerned.add(ix.id)
    if ix is not None and ix.params:
        entities.append(_query(ix))
    if ix is not None and ix.resource is not None and ix.kind not in (Kind.BATCH, Kind.TRANSACTION):
        concerned |= patients(ix.type or "", ix.id or "", dumps(ix.resource))
    kind = ix.kind.value if ix is not None else "operation"
    action = _ACTIONS.get(kind, "E" if ix is not None and ix.kind is Kind.OPERATION else "R")
    return event(ctx, kind, action, MINOR_FAILURE, entities, concerned, reason=reason)


def authentication_failure(address: str | None, reason: str) -> dict[str, Any]:
    """The event of a request refused for its token (401): who is unknown, where from is not.
    IHE ATNA's User Authentication, failed."""
    agent: dict[str, Any] = {"requestor": True, "who": {"display": "unauthenticated"}}
    if address:
        agent["network"] = {"address": address, "type": "2"}
    return {
        "resourceType": "AuditEvent",
        "type": {"system": DICOM, "code": "110114", "display": "User Authentication"},
        "subtype": [{"system": DICOM, "code": "110122", "display": "Login"}],
        "action": "E",
        "recorded": instant(now()),
        "outcome": MINOR_FAILURE,
        "outcomeDesc": reason,
        "agent": [agent],
        "source": {
            "site": "rest",
            "observer": {"display": "CPTS FHIR server"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
    }


def event(
    ctx: Context,
    subtype: str,
    action: str,
    outcome: str,
    entities: list[dict[str, Any]],
    concerned: set[str],
    reason: str | None = None,
) -> dict[str, Any]:
    principal: Principal = ctx.principal
    audit: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": INTERACTION, "code": subtype}],
        "action": action,
        "recorded": instant(now()),
        "outcome": outcome,
        "purposeOfEvent": [{"coding": [{"system": PURPOSE, "code": _purpose(principal)}]}],
        "agent": [_agent(principal)],
        "source": {
            "site": ctx.source,
            "observer": {"display": "CPTS FHIR server"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
    }
    if reason:
        audit["outcomeDesc"] = reason
    patient_entities = [
        {
            "what": {"reference": f"Patient/{p}"},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        }
        for p in sorted(concerned)
    ]
    if entities or patient_entities:
        audit["entity"] = entities + patient_entities
    return audit


def _agent(principal: Principal) -> dict[str, Any]:
    agent: dict[str, Any] = {"requestor": True, "altId": principal.subject}
    if principal.fhir_user:
        agent["who"] = {"reference": principal.fhir_user}
    else:
        client = principal.client_id or principal.subject
        agent["who"] = {"identifier": {"system": CLIENT_SYSTEM, "value": client}}
    if principal.roles:
        agent["role"] = [{"text": role} for role in sorted(principal.roles)]
    if principal.address:
        agent["network"] = {"address": principal.address, "type": "2"}
    if principal.token_id:
        agent["policy"] = [f"urn:uuid:{principal.token_id}"]
    return agent


def _purpose(principal: Principal) -> str:
    """Care for professionals and the hospital, care management for coordinators, system
    administration for administrators and auditors."""
    if principal.roles & {ADMIN, AUDITOR}:
        return "HSYSADMIN"
    if COORDINATOR in principal.roles:
        return "CAREMGT"
    return "TREAT"


def _resource(type_: str, id_: str, version: int | None = None) -> dict[str, Any]:
    reference = f"{type_}/{id_}" + (f"/_history/{version}" if version else "")
    return {
        "what": {"reference": reference},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
    }


def _query(ix: Interaction) -> dict[str, Any]:
    text = "&".join(f"{k}={v}" for k, v in ix.params)
    path = "/".join(p for p in (ix.type, ix.id) if p)
    return {
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
        "description": path or "/",
        "query": base64.b64encode(text.encode()).decode(),
    }


def _operation(ix: Interaction) -> dict[str, Any]:
    return {
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": OBJECT_ROLE, "code": "20", "display": "Job"},
        "name": f"${ix.operation}",
    }


def is_read(kind: Kind) -> bool:
    return kind in _READ_KINDS
