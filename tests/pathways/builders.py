"""CarePlans and Tasks in the shape of docs/pathways.md, written over HTTP with ids chosen by
the test, and the few requests the pathway tests repeat (read, move a task to a status)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

C = "https://cpts-fhir.org/fhir"
PATHWAY = f"{C}/StructureDefinition/pathway"
STEP = f"{C}/StructureDefinition/pathway-step"
FUNDING = f"{C}/StructureDefinition/funding-source"
PATIENT = "Patient/pat-1"
ORGANIZATION = "Organization/cpts-1"
NURSE = "Practitioner/idel-1"
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


def complete(api: httpx.Client, id_: str, end: str | None = None) -> dict[str, Any]:
    """Accept, start and complete a requested task, at `end` when given."""
    walk(api, id_, "accepted", "in-progress")
    changes = {"executionPeriod": {"end": end}} if end else {}
    response = move(api, id_, "completed", **changes)
    assert response.status_code == 200, response.text
    return response.json()
