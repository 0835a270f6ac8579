"""GET /metadata tells the truth: what it declares is what the server does."""

from __future__ import annotations

import httpx

from fhir_server.model.registry import resource_types
from tests.rest.resources import JSON, patient


def test_capability_statement(fhir: httpx.Client) -> None:
    response = fhir.get("/metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    assert set(statement["format"]) == {"application/fhir+json", "application/fhir+xml"}
    assert "application/json-patch+json" in statement["patchFormat"]
    rest = statement["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {
        "transaction",
        "batch",
        "search-system",
        "history-system",
    }
    declared = {r["type"]: r for r in rest["resource"]}
    assert set(declared) == set(resource_types())
    task = declared["Task"]
    assert {i["code"] for i in task["interaction"]} == {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    }
    assert task["versioning"] == "versioned-update"
    assert task["conditionalDelete"] == "single"
    assert {p["name"] for p in task["searchParam"]} >= {"owner", "status", "patient"}


def test_every_declared_type_accepts_every_declared_interaction(fhir: httpx.Client) -> None:
    """A sample of types beyond Patient: create, read, search, history, delete all work."""
    statement = fhir.get("/metadata").json()
    declared = [r["type"] for r in statement["rest"][0]["resource"]]
    samples = {
        "Organization": {"resourceType": "Organization", "name": "CPTS"},
        "CareTeam": {"resourceType": "CareTeam", "status": "active"},
        "Basic": {"resourceType": "Basic", "code": {"text": "x"}},
    }
    for type_, resource in samples.items():
        assert type_ in declared
        created = fhir.post(f"/{type_}", json=resource, headers=JSON).json()
        assert fhir.get(f"/{type_}/{created['id']}").status_code == 200
        assert fhir.get(f"/{type_}", params={"_id": created["id"]}).json()["total"] == 1
        assert fhir.get(f"/{type_}/_history").json()["entry"]
        assert fhir.delete(f"/{type_}/{created['id']}").status_code == 204


def test_capability_statement_in_xml(fhir: httpx.Client) -> None:
    response = fhir.get("/metadata", headers={"accept": "application/fhir+xml"})
    assert response.headers["content-type"].startswith("application/fhir+xml")
    assert b'<fhirVersion value="4.0.1"/>' in response.content
    fhir.post("/Patient", json=patient(), headers=JSON)
