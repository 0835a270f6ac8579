"""PATCH over HTTP with JSON Patch and FHIRPath Patch (http.html#patch)."""

from __future__ import annotations

import httpx

from tests.rest.resources import JSON, patient

JSON_PATCH = {"content-type": "application/json-patch+json"}


def _fhirpath_replace(path: str, value_type: str, value: object) -> dict:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": path},
                    {"name": "value", f"value{value_type}": value},
                ],
            }
        ],
    }


def test_json_patch(fhir: httpx.Client) -> None:
    created = fhir.post("/Patient", json=patient(), headers=JSON).json()
    response = fhir.patch(
        f"/Patient/{created['id']}",
        headers=JSON_PATCH,
        json=[
            {"op": "test", "path": "/gender", "value": "female"},
            {"op": "replace", "path": "/gender", "value": "male"},
            {"op": "add", "path": "/name/0/given/-", "value": "Marie"},
        ],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["gender"] == "male" and body["name"][0]["given"] == ["Hélène", "Marie"]
    assert body["meta"]["versionId"] == "2" and response.headers["etag"] == 'W/"2"'


def test_fhirpath_patch(fhir: httpx.Client) -> None:
    created = fhir.post("/Patient", json=patient(), headers=JSON).json()
    response = fhir.patch(
        f"/Patient/{created['id']}",
        headers=JSON,
        json=_fhirpath_replace("Patient.birthDate", "Date", "1950-01-01"),
    )
    assert response.status_code == 200, response.text
    assert response.json()["birthDate"] == "1950-01-01"


def test_failing_patch_is_422_and_changes_nothing(fhir: httpx.Client) -> None:
    created = fhir.post("/Patient", json=patient(), headers=JSON).json()
    url = f"/Patient/{created['id']}"
    failed_test = fhir.patch(
        url,
        headers=JSON_PATCH,
        json=[
            {"op": "replace", "path": "/gender", "value": "male"},
            {"op": "test", "path": "/gender", "value": "female"},
        ],
    )
    invalid_result = fhir.patch(
        url, headers=JSON_PATCH, json=[{"op": "replace", "path": "/gender", "value": 12}]
    )
    changes_id = fhir.patch(
        url, headers=JSON_PATCH, json=[{"op": "replace", "path": "/id", "value": "other"}]
    )
    no_target = fhir.patch(
        url, headers=JSON, json=_fhirpath_replace("Patient.deceased", "Boolean", True)
    )
    for response in (failed_test, invalid_result, changes_id, no_target):
        assert response.status_code == 422, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    assert fhir.get(url).json()["meta"]["versionId"] == "1"


def test_malformed_patch_is_400(fhir: httpx.Client) -> None:
    created = fhir.post("/Patient", json=patient(), headers=JSON).json()
    url = f"/Patient/{created['id']}"
    assert fhir.patch(url, headers=JSON_PATCH, json={"op": "replace"}).status_code == 400
    assert fhir.patch(url, headers=JSON, json=patient()).status_code == 400
    assert (
        fhir.patch(url, headers={"content-type": "text/plain"}, content=b"gender=male").status_code
        == 415
    )


def test_patch_missing_or_deleted(fhir: httpx.Client) -> None:
    patch = [{"op": "replace", "path": "/gender", "value": "male"}]
    assert fhir.patch("/Patient/none", headers=JSON_PATCH, json=patch).status_code == 404
    created = fhir.post("/Patient", json=patient(), headers=JSON).json()
    fhir.delete(f"/Patient/{created['id']}")
    assert (
        fhir.patch(f"/Patient/{created['id']}", headers=JSON_PATCH, json=patch).status_code == 410
    )
