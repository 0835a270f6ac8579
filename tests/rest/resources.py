"""Small example resources for the REST tests."""

from __future__ import annotations

from typing import Any

INS = "urn:oid:1.2.250.1.213.1.4.8"
JSON = {"content-type": "application/fhir+json"}


def patient(
    family: str = "Dupont", given: str = "Hélène", ins: str | None = None, **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "gender": "female",
        "birthDate": "1948-03-12",
    }
    if ins:
        resource["identifier"] = [{"system": INS, "value": ins}]
    resource.update(extra)
    return resource


def task(patient_id: str, owner: str | None = None, status: str = "requested") -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "status": status,
        "intent": "order",
        "for": {"reference": f"Patient/{patient_id}"},
    }
    if owner:
        resource["owner"] = {"reference": owner}
    return resource
