"""Batch and transaction Bundles (http.html#transaction)."""

from __future__ import annotations

import base64
import json

import httpx

from tests.rest.resources import INS, JSON, patient


def bundle(type_: str, *entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": type_, "entry": list(entries)}


def entry(
    method: str, url: str, resource: dict | None = None, full_url: str | None = None, **request: str
) -> dict:
    item: dict = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        item["resource"] = resource
    if full_url:
        item["fullUrl"] = full_url
    return item


def _count(fhir: httpx.Client, type_: str) -> int:
    return fhir.get(f"/{type_}", params={"_summary": "count"}).json()["total"]


def test_transaction_resolves_urn_uuid_references(fhir: httpx.Client) -> None:
    response = fhir.post(
        "/",
        headers=JSON,
        json=bundle(
            "transaction",
            entry(
                "POST",
                "Task",
                {
                    "resourceType": "Task",
                    "status": "requested",
                    "intent": "order",
                    "for": {"reference": "urn:uuid:0d5d9a2e-5f1c-4d9e-9c4a-1"},
                    "owner": {"reference": "urn:uuid:0d5d9a2e-5f1c-4d9e-9c4a-2"},
                },
            ),
            entry("POST", "Patient", patient(), full_url="urn:uuid:0d5d9a2e-5f1c-4d9e-9c4a-1"),
            entry(
                "POST",
                "Practitioner",
                {"resourceType": "Practitioner"},
                full_url="urn:uuid:0d5d9a2e-5f1c-4d9e-9c4a-2",
            ),
        ),
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201 Created"] * 3
    task_location, patient_location, practitioner_location = (
        e["response"]["location"] for e in result["entry"]
    )
    patient_id = patient_location.split("/")[1]
    practitioner_id = practitioner_location.split("/")[1]
    task = fhir.get("/" + task_location.rsplit("/_history", 1)[0]).json()
    assert task["for"] == {"reference": f"Patient/{patient_id}"}
    assert task["owner"] == {"reference": f"Practitioner/{practitioner_id}"}
    for item in result["entry"]:
        assert item["response"]["etag"] == 'W/"1"' and item["response"]["lastModified"]
        assert item["resource"]["id"] in item["fullUrl"]


def test_transaction_is_all_or_nothing(fhir: httpx.Client) -> None:
    kept = fhir.post("/Patient", json=patient(), headers=JSON).json()
    response = fhir.post(
        "/",
        headers=JSON,
        json=bundle(
            "transaction",
            entry("POST", "Patient", patient(family="Martin")),
            entry("DELETE", f"Patient/{kept['id']}"),
            entry("PUT", f"Patient/{kept['id']}x", patient(id=f"{kept['id']}x")),
            entry("POST", "Patient", patient(birthDate="not-a-date")),
        ),
    )
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[3].resource.birthDate"]
    assert issue["diagnostics"].startswith("Bundle.entry[3]")
    assert _count(fhir, "Patient") == 1
    assert fhir.get(f"/Patient/{kept['id']}").json()["meta"]["versionId"] == "1"
    assert fhir.get(f"/Patient/{kept['id']}x").status_code == 404
    assert fhir.get("/_history").json()["entry"][0]["resource"]["id"] == kept["id"]


def test_transaction_failing_precondition_rolls_back(fhir: httpx.Client) -> None:
    existing = fhir.post("/Patient", json=patient(), headers=JSON).json()
    response = fhir.post(
        "/",
        headers=JSON,
        json=bundle(
            "transaction",
            entry("POST", "Patient", patient(family="Martin")),
            entry(
                "PUT", f"Patient/{existing['id']}", {**existing, "gender": "male"}, ifMatch='W/"9"'
            ),
        ),
    )
    assert response.status_code == 412
    assert _count(fhir, "Patient") == 1


def test_transaction_processing_order(fhir: httpx.Client) -> None:
    old = fhir.post("/Patient", json=patient(ins="279035121518989"), headers=JSON).json()
    response = fhir.post(
        "/",
        headers=JSON,
        json=bundle(
            "transaction",
            entry("GET", f"Patient?identifier={INS}|279035121518989"),
            entry("PUT", f"Patient/{old['id']}", {**old, "gender": "male"}),
            entry("POST", "Patient", patient(ins="279035121518989", family="Nouveau")),
            entry("DELETE", "Patient?family=absent"),
        ),
    )
    assert response.status_code == 200, response.text
    get, put, post, delete = response.json()["entry"]
    assert delete["response"]["status"] == "204 No Content"
    assert put["response"]["status"] == "200 OK" and put["resource"]["gender"] == "male"
    # GET runs last: it sees the update and the creation of the same transaction.
    found = get["resource"]
    assert found["type"] == "searchset" and found["total"] == 2
    assert {e["resource"]["name"][0]["family"] for e in found["entry"]} == {"Dupont", "Nouveau"}
    assert post["response"]["location"].startswith("Patient/")


def test_transaction_conditional_entries_and_references(fhir: httpx.Client) -> None:
    existing = fhir.post("/Patient", json=patient(ins="279035121518989"), headers=JSON).json()
    response = fhir.post(
        "/",
        headers=JSON,
        json=bundle(
            "transaction",
            entry(
                "POST",
                "Patient",
                patient(ins="279035121518989"),
                full_url="urn:uuid:a1b2c3d4-0000-4000-8000-000000000001",
                ifNoneExist=f"identifier={INS}|279035121518989",
            ),
            entry(
                "POST",
                "Encounter",
                {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "IMP",
                    },
                    "subject": {"reference": "urn:uuid:a1b2c3d4-0000-4000-8000-000000000001"},
                },
            ),
            entry(
                "POST",
                "Observation",
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "poids"},
                    "subject": {"reference": f"Patient?identifier={INS}|279035121518989"},
                },
            ),
            entry(
                "PUT",
                "Practitioner?identifier=https://rpps.esante.gouv.fr|10003456789",
                {
                    "resourceType": "Practitioner",
                    "identifier": [
                        {"system": "https://rpps.esante.gouv.fr", "value": "10003456789"}
                    ],
                },
            ),
        ),
    )
    assert response.status_code == 200, response.text
    created_patient, encounter, observation, practitioner = response.json()["entry"]
    assert created_patient["response"]["status"] == "200 OK"  # matched, not created
    assert practitioner["response"]["status"] == "201 Created"
    assert encounter["resource"]["subject"]["reference"] == f"Patient/{existing['id']}"
    assert observation["resource"]["subject"]["reference"] == f"Patient/{existing['id']}"
    assert _count(fhir, "Patient") == 1


def test_conditional_reference_without_single_match_fails(fhir: httpx.Client) -> None:
    response = fhir.post(
        "/",
        headers=JSON,
        json=bundle(
            "transaction",
            entry(
                "POST",
                "Observation",
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": f"Patient?identifier={INS}|0"},
                },
            ),
        ),
    )
    assert response.status_code == 412
    assert _count(fhir, "Observation") == 0


def test_transaction_refuses_two_changes_to_one_resource(fhir: httpx.Client) -> None:
    existing = fhir.post("/Patient", json=patient(), headers=JSON).json()
    response = fhir.post(
        "/",
        headers=JSON,
        json=bundle(
            "transaction",
            entry("PUT", f"Patient/{existing['id']}", {**existing, "gender": "male"}),
            entry("DELETE", f"Patient/{existing['id']}"),
        ),
    )
    assert response.status_code == 400
    assert fhir.get(f"/Patient/{existing['id']}").json()["gender"] == "female"


def test_transaction_patch_entries(fhir: httpx.Client) -> None:
    existing = fhir.post("/Patient", json=patient(), headers=JSON).json()
    json_patch = base64.b64encode(
        json.dumps([{"op": "replace", "path": "/gender", "value": "male"}]).encode()
    ).decode()
    response = fhir.post(
        "/",
        headers=JSON,
        json=bundle(
            "transaction",
            entry(
                "PATCH",
                f"Patient/{existing['id']}",
                {
                    "resourceType": "Binary",
                    "contentType": "application/json-patch+json",
                    "data": json_patch,
                },
            ),
        ),
    )
    assert response.status_code == 200, response.text
    assert fhir.get(f"/Patient/{existing['id']}").json()["gender"] == "male"


def test_batch_entries_are_independent(fhir: httpx.Client) -> None:
    response = fhir.post(
        "/",
        headers=JSON,
        json=bundle(
            "batch",
            entry("POST", "Patient", patient()),
            entry("POST", "Patient", patient(birthDate="nope")),
            entry("GET", "Patient/unknown"),
            entry("GET", "metadata"),
        ),
    )
    assert response.status_code == 200
    result = response.json()
    assert result["type"] == "batch-response"
    created, invalid, missing, metadata = result["entry"]
    assert created["response"]["status"] == "201 Created"
    assert invalid["response"]["status"] == "400 Bad Request"
    assert invalid["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert missing["response"]["status"] == "404 Not Found"
    assert metadata["resource"]["resourceType"] == "CapabilityStatement"
    assert _count(fhir, "Patient") == 1


def test_prefer_minimal_applies_to_entries(fhir: httpx.Client) -> None:
    response = fhir.post(
        "/",
        headers={**JSON, "prefer": "return=minimal"},
        json=bundle("transaction", entry("POST", "Patient", patient())),
    )
    (item,) = response.json()["entry"]
    assert "resource" not in item and item["response"]["location"]


def test_bad_bundles(fhir: httpx.Client, live) -> None:
    assert fhir.post("/", headers=JSON, json=bundle("collection")).status_code == 400
    assert fhir.post("/", headers=JSON, json=patient()).status_code == 400
    no_request = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": patient()}],
    }
    assert fhir.post("/", headers=JSON, json=no_request).status_code == 400
    bad_url = bundle("transaction", entry("PUT", "Patient", patient()))
    assert fhir.post("/", headers=JSON, json=bad_url).status_code == 400
    limit = live.server.settings.max_transaction_entries
    huge = bundle("batch", *[entry("GET", "metadata")] * (limit + 1))
    assert fhir.post("/", headers=JSON, json=huge).status_code == 413
