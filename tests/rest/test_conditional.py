"""Conditional create (If-None-Exist), update, delete and patch by search criteria."""

from __future__ import annotations

import httpx

from tests.rest.resources import INS, JSON, patient

BY_INS = f"identifier={INS}|279035121518989"


def _count(fhir: httpx.Client) -> int:
    return fhir.get("/Patient", params={"_summary": "count"}).json()["total"]


def test_conditional_create(fhir: httpx.Client) -> None:
    headers = {**JSON, "if-none-exist": BY_INS}
    first = fhir.post("/Patient", json=patient(ins="279035121518989"), headers=headers)
    assert first.status_code == 201
    again = fhir.post(
        "/Patient", json=patient(ins="279035121518989", gender="male"), headers=headers
    )
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["gender"] == "female"  # the existing one, untouched
    assert _count(fhir) == 1
    fhir.post("/Patient", json=patient(ins="279035121518989"), headers=JSON)
    several = fhir.post("/Patient", json=patient(ins="279035121518989"), headers=headers)
    assert several.status_code == 412
    assert _count(fhir) == 2


def test_conditional_create_with_unknown_parameter_is_rejected(fhir: httpx.Client) -> None:
    response = fhir.post(
        "/Patient", json=patient(), headers={**JSON, "if-none-exist": "shoe-size=42"}
    )
    assert response.status_code == 400
    assert _count(fhir) == 0


def test_conditional_update(fhir: httpx.Client) -> None:
    created = fhir.put(f"/Patient?{BY_INS}", json=patient(ins="279035121518989"), headers=JSON)
    assert created.status_code == 201
    id_ = created.json()["id"]
    updated = fhir.put(
        f"/Patient?{BY_INS}", json=patient(ins="279035121518989", gender="male"), headers=JSON
    )
    assert updated.status_code == 200
    assert updated.json()["id"] == id_ and updated.json()["meta"]["versionId"] == "2"
    wrong_id = fhir.put(
        f"/Patient?{BY_INS}", json=patient(id="other", ins="279035121518989"), headers=JSON
    )
    assert wrong_id.status_code == 400
    fhir.post("/Patient", json=patient(ins="279035121518989"), headers=JSON)
    several = fhir.put(f"/Patient?{BY_INS}", json=patient(ins="279035121518989"), headers=JSON)
    assert several.status_code == 412


def test_conditional_update_with_client_id_and_no_match_creates_it(fhir: httpx.Client) -> None:
    response = fhir.put(
        f"/Patient?{BY_INS}", json=patient(id="chosen", ins="279035121518989"), headers=JSON
    )
    assert response.status_code == 201
    assert response.json()["id"] == "chosen"


def test_conditional_delete(fhir: httpx.Client) -> None:
    assert fhir.delete(f"/Patient?{BY_INS}").status_code == 204  # nothing matches
    fhir.post("/Patient", json=patient(ins="279035121518989"), headers=JSON)
    fhir.post("/Patient", json=patient(ins="279035121518989"), headers=JSON)
    assert fhir.delete(f"/Patient?{BY_INS}").status_code == 412
    assert _count(fhir) == 2
    other = fhir.post("/Patient", json=patient(ins="184127645108946"), headers=JSON).json()
    assert fhir.delete(f"/Patient?identifier={INS}|184127645108946").status_code == 204
    assert fhir.get(f"/Patient/{other['id']}").status_code == 410
    assert fhir.delete("/Patient").status_code == 400  # no criteria: refuse to delete all


def test_conditional_patch(fhir: httpx.Client) -> None:
    created = fhir.post("/Patient", json=patient(ins="279035121518989"), headers=JSON).json()
    patch = [{"op": "replace", "path": "/gender", "value": "male"}]
    response = fhir.patch(
        f"/Patient?{BY_INS}", json=patch, headers={"content-type": "application/json-patch+json"}
    )
    assert response.status_code == 200
    assert response.json()["id"] == created["id"] and response.json()["gender"] == "male"
    missing = fhir.patch(
        f"/Patient?identifier={INS}|0",
        json=patch,
        headers={"content-type": "application/json-patch+json"},
    )
    assert missing.status_code == 404
