"""Extended operations over HTTP at the three levels, with `$meta` as the example."""

from __future__ import annotations

import httpx

from tests.rest.resources import JSON, patient

TAG = {"system": "https://cpts-fhir.org/fhir/CodeSystem/tag", "code": "demo"}
SECURITY = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
PROFILE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient"


def _meta(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    (parameter,) = response.json()["parameter"]
    assert parameter["name"] == "return"
    return parameter["valueMeta"]


def test_meta_at_instance_type_and_system_level(fhir: httpx.Client) -> None:
    tagged = fhir.post(
        "/Patient",
        headers=JSON,
        json=patient(meta={"tag": [TAG], "security": [SECURITY], "profile": [PROFILE]}),
    ).json()
    fhir.post(
        "/Observation",
        headers=JSON,
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "poids"},
            "meta": {"tag": [{"code": "local"}]},
        },
    )
    deleted = fhir.post(
        "/Patient", headers=JSON, json=patient(meta={"tag": [{"code": "gone"}]})
    ).json()
    fhir.delete(f"/Patient/{deleted['id']}")

    instance = _meta(fhir.get(f"/Patient/{tagged['id']}/$meta"))
    assert instance == {"tag": [TAG], "security": [SECURITY], "profile": [PROFILE]}
    assert _meta(fhir.post(f"/Patient/{tagged['id']}/$meta")) == instance
    by_type = _meta(fhir.get("/Patient/$meta"))
    assert by_type == {"tag": [TAG], "security": [SECURITY], "profile": [PROFILE]}
    everything = _meta(fhir.get("/$meta"))
    assert everything["tag"] == [{"code": "local"}, TAG]  # no system sorts first
    assert fhir.get(f"/Patient/{deleted['id']}/$meta").status_code == 410


def test_operation_errors(fhir: httpx.Client) -> None:
    unknown = fhir.get("/Patient/$unknown")
    assert unknown.status_code == 404
    assert unknown.json()["resourceType"] == "OperationOutcome"
    assert fhir.get("/Patient/nobody/$meta").status_code == 404


def test_operations_are_declared(fhir: httpx.Client) -> None:
    statement = fhir.get("/metadata").json()["rest"][0]
    assert {
        "name": "meta",
        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-meta",
    } in statement["operation"]
    task = next(r for r in statement["resource"] if r["type"] == "Task")
    assert "meta" in {o["name"] for o in task["operation"]}


def test_operation_in_a_batch(fhir: httpx.Client) -> None:
    created = fhir.post("/Patient", headers=JSON, json=patient(meta={"tag": [TAG]})).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Patient/{created['id']}/$meta"}}],
    }
    (entry,) = fhir.post("/", headers=JSON, json=bundle).json()["entry"]
    assert entry["response"]["status"] == "200 OK"
    assert entry["resource"]["parameter"][0]["valueMeta"] == {"tag": [TAG]}
