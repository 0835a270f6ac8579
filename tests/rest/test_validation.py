"""Profiles enforced on every write through the pipeline (422, nothing stored), `$validate`,
and the profiles, value sets and code systems served read-only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fhir_server.conformance import load_conformance
from fhir_server.engine.interaction import Context, Interaction, Kind
from tests.conftest import LiveServer, make_server
from tests.rest.resources import INS, JSON, patient

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "profiles"
PATHWAY_TASK = "https://cpts-fhir.org/fhir/StructureDefinition/pathway-task"
INS_PROFILE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins"


def example(profile: str, name: str) -> dict:
    return json.loads((EXAMPLES / profile / name).read_text(encoding="utf-8"))


def _count(fhir: httpx.Client, type_: str) -> int:
    return fhir.get(f"/{type_}", params={"_summary": "count"}).json()["total"]


def test_required_profile_refuses_an_ins_without_validated_identity(fhir: httpx.Client) -> None:
    unvalidated = patient(identifier=[{"system": INS, "value": "279035121518989"}])
    response = fhir.post("/Patient", json=unvalidated, headers=JSON)
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["code"] == "invariant" and "VALI" in issue["diagnostics"]
    assert (
        fhir.post("/Patient", json=patient(ins="279035121518989"), headers=JSON).status_code == 201
    )
    assert _count(fhir, "Patient") == 1


def test_base_required_bindings_on_every_write(fhir: httpx.Client) -> None:
    bogus = {"resourceType": "Task", "status": "bogus", "intent": "order"}
    response = fhir.post("/Task", json=bogus, headers=JSON)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Task.status"]
    created = fhir.post("/Patient", json=patient(), headers=JSON).json()
    changed = fhir.put(
        f"/Patient/{created['id']}", json={**created, "gender": "femme"}, headers=JSON
    )
    assert changed.status_code == 422
    assert changed.json()["issue"][0]["expression"] == ["Patient.gender"]
    assert fhir.get(f"/Patient/{created['id']}").json()["meta"]["versionId"] == "1"
    patched = fhir.patch(
        f"/Patient/{created['id']}",
        headers={"content-type": "application/json-patch+json"},
        json=[{"op": "replace", "path": "/gender", "value": "femme"}],
    )
    assert patched.status_code == 422
    assert _count(fhir, "Task") == 0


def test_claimed_profile_is_enforced(fhir: httpx.Client) -> None:
    valid = example("pathway-task", "valid.json")
    invalid = example("pathway-task", "invalid-pathway-and-deadline.json")
    response = fhir.post("/Task", json=invalid, headers=JSON)
    assert response.status_code == 422
    paths = {i["expression"][0] for i in response.json()["issue"]}
    # the pathway extension carries a string, not a Coding; no deadline
    assert paths == {
        "Task.extension[0].valueString",
        "Task.extension[0].value",
        "Task.restriction.period.end",
    }
    created = fhir.post("/Task", json=valid, headers=JSON)
    assert created.status_code == 201, created.text
    assert _count(fhir, "Task") == 1


def test_unknown_claimed_profile_is_accepted(fhir: httpx.Client) -> None:
    other_ig = patient(meta={"profile": ["https://example.org/fhir/StructureDefinition/other"]})
    assert fhir.post("/Patient", json=other_ig, headers=JSON).status_code == 201


def test_invalid_entry_fails_the_whole_transaction(fhir: httpx.Client) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "POST", "url": "Patient"}, "resource": patient()},
            {
                "request": {"method": "POST", "url": "Task"},
                "resource": {"resourceType": "Task", "status": "bogus", "intent": "order"},
            },
        ],
    }
    response = fhir.post("/", json=bundle, headers=JSON)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.status"]
    assert _count(fhir, "Patient") == 0


def test_validate_operation_type_level(fhir: httpx.Client) -> None:
    ok = fhir.post("/Patient/$validate", json=patient(), headers=JSON)
    assert ok.status_code == 200
    assert [i["severity"] for i in ok.json()["issue"]] == ["information"]
    against_ins = fhir.post(
        "/Patient/$validate",
        headers=JSON,
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "resource", "resource": patient()},
                {"name": "mode", "valueCode": "create"},
                {"name": "profile", "valueUri": INS_PROFILE},
            ],
        },
    )
    assert against_ins.status_code == 200
    assert any(i["severity"] == "error" for i in against_ins.json()["issue"])
    bad_structure = fhir.post(
        "/Patient/$validate", json=patient(birthDate="1948-13-01"), headers=JSON
    )
    assert bad_structure.status_code == 200
    assert bad_structure.json()["issue"][0]["expression"] == ["Patient.birthDate"]
    assert (
        fhir.post(
            "/Patient/$validate", json=patient(), params={"mode": "nonsense"}, headers=JSON
        ).status_code
        == 400
    )
    assert fhir.post("/Task/$validate", json=patient(), headers=JSON).status_code == 400
    assert _count(fhir, "Patient") == 0  # $validate stores nothing


def test_validate_operation_instance_level(fhir: httpx.Client) -> None:
    created = fhir.post("/Patient", json=patient(ins="279035121518989"), headers=JSON).json()
    url = f"/Patient/{created['id']}/$validate"
    stored = fhir.get(url, params={"profile": INS_PROFILE})
    assert stored.status_code == 200  # the stored Patient lacks what the INS profile demands
    assert {i["severity"] for i in stored.json()["issue"]} == {"error"}
    assert fhir.get(url).json()["issue"][0]["severity"] == "information"  # valid as stored
    delete = fhir.get(url, params={"mode": "delete"})
    assert delete.status_code == 200 and delete.json()["issue"][0]["severity"] == "information"
    other_id = fhir.post(
        url,
        headers=JSON,
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "resource", "resource": {**created, "id": "other"}},
                {"name": "mode", "valueCode": "update"},
            ],
        },
    )
    assert other_id.json()["issue"][0]["expression"] == ["Patient.id"]
    assert fhir.get("/Patient/nobody/$validate", params={"mode": "delete"}).status_code == 404


@pytest.fixture
def lenient(live: LiveServer) -> Iterator[httpx.Client]:
    """A second server on the same database that requires no profile."""
    server = make_server(
        str(live.server.database.url.render_as_string(hide_password=False)), required_profiles=""
    )
    unvalidated = patient(identifier=[{"system": INS, "value": "279035121518989"}])
    server.engine.execute(Interaction(Kind.CREATE, "Patient", resource=unvalidated), Context())
    server.close()
    with httpx.Client(base_url=live.url) as client:
        yield client


def test_required_profiles_are_configurable(fhir: httpx.Client, lenient: httpx.Client) -> None:
    assert _count(fhir, "Patient") == 1  # accepted by the server that requires nothing


def test_profiles_value_sets_and_code_systems_are_served(fhir: httpx.Client, live) -> None:
    load_conformance(live.server)
    found = fhir.get("/StructureDefinition", params={"url": INS_PROFILE}).json()
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["differential"]["element"]
    pathway_vs = fhir.get(
        "/ValueSet", params={"url": "https://cpts-fhir.org/fhir/ValueSet/pathway"}
    ).json()
    assert pathway_vs["total"] == 1
    system = fhir.get(
        "/CodeSystem", params={"url": "https://cpts-fhir.org/fhir/CodeSystem/pathway"}
    ).json()["entry"][0]["resource"]
    assert {c["code"] for c in system["concept"]} == {
        "hospital-discharge",
        "heart-failure",
        "osteoporosis",
        "neurodevelopment",
    }
    profile = found["entry"][0]["resource"]
    assert (
        fhir.put(f"/StructureDefinition/{profile['id']}", json=profile, headers=JSON).status_code
        == 405
    )
    assert fhir.delete(f"/CodeSystem/{system['id']}").status_code == 405
    local = {
        "resourceType": "CodeSystem",
        "url": "https://cpts.example/cs/local",
        "status": "active",
        "content": "complete",
        "concept": [{"code": "x"}],
    }
    assert fhir.post("/CodeSystem", json=local, headers=JSON).status_code == 201
