"""Small example resources for the REST tests."""

from __future__ import annotations

from typing import Any

INS = "urn:oid:1.2.250.1.213.1.4.8"
JSON = {"content-type": "application/fhir+json"}
VALIDATED = {
    "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability",
    "extension": [
        {
            "url": "identityReliability",
            "valueCoding": {
                "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445",
                "code": "VALI",
            },
        }
    ],
}


def patient(
    family: str = "Dupont", given: str = "Hélène", ins: str | None = None, **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "gender": "female",
        "birthDate": "1948-03-12",
    }
    if ins:  # an INS is only used with a validated identity (FR Core)
        resource["identifier"] = [{"system": INS, "value": ins}]
        resource["extension"] = [VALIDATED]
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


def put_transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle that puts each resource at its id."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }
