"""CarePlans and Tasks in the shape of docs/pathways.md, written over HTTP with ids chosen by
the test; the people and organisations of a CPTS as FR Core has them (professionals with their
RPPS, organisations, a patient with a validated INS); the few requests the pathway tests
repeat (read, move a task to a status, by PUT or JSON Patch); and the outbox events that
failed, which a test dispatching the outbox expects to be none."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy import select

from fhir_server.server import Server
from fhir_server.storage.schema import OutboxRow
from tests.rest.resources import INS, VALIDATED, patient

C = "https://cpts-fhir.org/fhir"
PATHWAY = f"{C}/StructureDefinition/pathway"
STEP = f"{C}/StructureDefinition/pathway-step"
FUNDING = f"{C}/StructureDefinition/funding-source"
PATIENT = "Patient/pat-1"
ORGANIZATION = "Organization/cpts-1"
NURSE = "Practitioner/idel-1"
FR_CORE = "https://hl7.fr/ig/fhir/core"
FR_V2_0203 = f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0203"
RPPS = "https://rpps.esante.gouv.fr"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
FINESS = "https://finess.esante.gouv.fr"
JSON_PATCH = {"content-type": "application/json-patch+json"}
# The way from creation (requested) to each status, through transitions R4 allows.
PATHS: dict[str, list[str]] = {
    "draft": [],
    "requested": [],
    "ready": [],
    "received": ["received"],
    "accepted": ["accepted"],
    "rejected": ["rejected"],
    "cancelled": ["cancelled"],
    "in-progress": ["accepted", "in-progress"],
    "on-hold": ["accepted", "in-progress", "on-hold"],
    "completed": ["accepted", "in-progress", "completed"],
    "failed": ["accepted", "in-progress", "failed"],
    "entered-in-error": ["entered-in-error"],
}


def duration(value: int, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}


def pathway_coding(pathway: str) -> dict[str, Any]:
    return {"system": f"{C}/CodeSystem/pathway", "code": pathway}


def careplan(
    id_: str, pathway: str = "heart-failure", task_ids: Sequence[str] = ()
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": id_,
        "meta": {"profile": [f"{C}/StructureDefinition/pathway-careplan"]},
        "extension": [{"url": PATHWAY, "valueCoding": pathway_coding(pathway)}],
        "identifier": [{"system": f"{C}/sid/pathway-careplan", "value": f"{pathway}|pat-1|{id_}"}],
        "instantiatesCanonical": [f"{C}/PlanDefinition/{pathway}|1.0.0"],
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [pathway_coding(pathway)]}],
        "subject": {"reference": PATIENT},
        "period": {"start": "2026-11-23T15:00:00+01:00"},
        "author": {"reference": ORGANIZATION},
    }
    if task_ids:
        resource["activity"] = [{"reference": {"reference": f"Task/{t}"}} for t in task_ids]
    return resource


def task(
    id_: str,
    careplan_id: str,
    step: str = "gp-visit",
    status: str = "requested",
    pathway: str = "heart-failure",
    owner: str | None = NURSE,
    due_within: dict[str, Any] | None = None,
    depends_on: Sequence[str] = (),
    offset: dict[str, Any] | None = None,
    required: bool = True,
    occurrence: int = 1,
    profile: bool = True,
) -> dict[str, Any]:
    """A pathway Task (profile pathway-task), or with `profile` false a Task of the same content
    that claims no profile (to use the R4 statuses pathway tasks never take, `ready`)."""
    rules: list[dict[str, Any]] = [
        {"url": "dueWithin", "valueDuration": due_within or duration(7, "d")},
        *({"url": "dependsOn", "valueReference": {"reference": f"Task/{d}"}} for d in depends_on),
        *([{"url": "offset", "valueDuration": offset}] if offset else []),
        {"url": "required", "valueBoolean": required},
        {"url": "occurrence", "valueInteger": occurrence},
    ]
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": id_,
        "extension": [
            {"url": PATHWAY, "valueCoding": pathway_coding(pathway)},
            {"url": STEP, "extension": rules},
        ],
        "identifier": [
            {
                "system": f"{C}/sid/pathway-task",
                "value": f"{pathway}|pat-1|{careplan_id}|{step}|{occurrence}",
            }
        ],
        "instantiatesCanonical": f"{C}/ActivityDefinition/{pathway}-{step}",
        "basedOn": [{"reference": f"CarePlan/{careplan_id}"}],
        "status": status,
        "intent": "order",
        "priority": "routine",
        "code": {
            "coding": [{"system": f"{C}/CodeSystem/pathway-step", "code": f"{pathway}.{step}"}]
        },
        "description": step,
        "for": {"reference": PATIENT},
        "authoredOn": "2026-11-23T15:00:00+01:00",
        "requester": {"reference": ORGANIZATION},
        "performerType": [{"coding": [{"system": f"{C}/CodeSystem/care-role", "code": "idel"}]}],
        "restriction": {
            "period": {"start": "2026-11-23T15:00:00+01:00", "end": "2026-11-30T23:59:59+01:00"}
        },
    }
    if owner:
        resource["owner"] = {"reference": owner}
    if profile:
        resource["meta"] = {"profile": [f"{C}/StructureDefinition/pathway-task"]}
    return resource


def practitioner(id_: str, rpps: str, family: str, given: str) -> dict[str, Any]:
    """A health professional (FR Core Practitioner): RPPS number and IDNPS (8 + RPPS)."""
    return {
        "resourceType": "Practitioner",
        "id": id_,
        "meta": {"profile": [f"{FR_CORE}/StructureDefinition/fr-core-practitioner"]},
        "identifier": [
            {
                "type": {"coding": [{"system": FR_V2_0203, "code": "RPPS"}]},
                "system": RPPS,
                "value": rpps,
            },
            {
                "type": {"coding": [{"system": FR_V2_0203, "code": "IDNPS"}]},
                "system": IDNPS,
                "value": f"8{rpps}",
            },
        ],
        "name": [{"family": family, "given": [given]}],
    }


def organization(id_: str, name: str, finess: str | None = None) -> dict[str, Any]:
    """An organisation (FR Core Organization): a CPTS, or a hospital with its FINESS."""
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "id": id_,
        "meta": {"profile": [f"{FR_CORE}/StructureDefinition/fr-core-organization"]},
        "name": name,
    }
    if finess:
        resource["identifier"] = [{"system": FINESS, "value": finess}]
    return resource


def ins_patient(
    id_: str,
    family: str,
    given: str,
    birth_date: str,
    ins: str,
    system: str = INS,
    kind: str = "INS-NIR",
    gender: str = "female",
) -> dict[str, Any]:
    """A patient whose identity is validated, known by their INS (FR Core Patient INS; `kind`
    is the identifier type of `system`: INS-NIR, or INS-NIR-TEST for the test OID)."""
    return patient(
        family,
        given,
        id=id_,
        meta={"profile": [f"{FR_CORE}/StructureDefinition/fr-core-patient-ins"]},
        extension=[VALIDATED],
        identifier=[
            {
                "use": "official",
                "type": {"coding": [{"system": FR_V2_0203, "code": kind}]},
                "system": system,
                "value": ins,
            }
        ],
        name=[{"use": "official", "family": family, "given": [given]}],
        gender=gender,
        birthDate=birth_date,
    )


def put(api: httpx.Client, resource: dict[str, Any], **headers: str) -> httpx.Response:
    return api.put(
        f"/{resource['resourceType']}/{resource['id']}",
        json=resource,
        headers={"content-type": "application/fhir+json", **headers},
    )


def created(api: httpx.Client, *resources: dict[str, Any]) -> None:
    for resource in resources:
        response = put(api, resource)
        assert response.status_code == 201, response.text


def read(api: httpx.Client, type_: str, id_: str) -> dict[str, Any]:
    response = api.get(f"/{type_}/{id_}")
    assert response.status_code == 200, response.text
    return response.json()


def move(api: httpx.Client, id_: str, status: str, **changes: Any) -> httpx.Response:
    """PUT the current Task with another status (and other elements changed)."""
    current = read(api, "Task", id_)
    return put(api, {**current, "status": status, **changes})


def walk(api: httpx.Client, id_: str, *statuses: str) -> dict[str, Any]:
    """Move a task through statuses, each step expected to succeed; returns the last version."""
    for status in statuses:
        response = move(api, id_, status)
        assert response.status_code == 200, response.text
    return read(api, "Task", id_)


def patch(
    api: httpx.Client, type_: str, id_: str, operations: list[dict[str, Any]], **headers: str
) -> httpx.Response:
    """A JSON Patch of one resource."""
    return api.patch(f"/{type_}/{id_}", json=operations, headers={**JSON_PATCH, **headers})


def complete(
    api: httpx.Client, id_: str, end: str | None = None, json_patch: bool = False
) -> dict[str, Any]:
    """Accept, start and complete a requested task, at `end` when given; by PUT of the whole
    task, or with `json_patch` by a JSON Patch per status."""
    if not json_patch:
        walk(api, id_, "accepted", "in-progress")
        changes = {"executionPeriod": {"end": end}} if end else {}
        response = move(api, id_, "completed", **changes)
        assert response.status_code == 200, response.text
        return response.json()
    for status in ("accepted", "in-progress", "completed"):
        operations = [{"op": "replace", "path": "/status", "value": status}]
        if status == "completed" and end:
            operations.append({"op": "add", "path": "/executionPeriod", "value": {"end": end}})
        response = patch(api, "Task", id_, operations)
        assert response.status_code == 200, response.text
    return response.json()


def failed_events(server: Server, consumer: str | None = None) -> list[str]:
    """The errors of the outbox events (of one consumer, or of all) whose handling failed, be
    it retried since or not."""
    outbox = OutboxRow.__table__
    query = select(outbox.c.last_error).where(outbox.c.last_error.is_not(None))
    if consumer is not None:
        query = query.where(outbox.c.consumer == consumer)
    with server.database.transaction(write=False) as conn:
        return [error for (error,) in conn.execute(query)]
