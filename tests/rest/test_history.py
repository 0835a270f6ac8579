"""history-instance, history-type, history-system (http.html#history): Bundles of type history,
newest first, `_since`, `_count`, and paging links that survive concurrent writes."""

from __future__ import annotations

import time

import httpx

from tests.rest.resources import JSON, patient


def _versions(fhir: httpx.Client, count: int) -> tuple[str, list[dict]]:
    created = fhir.post("/Patient", json=patient(), headers=JSON).json()
    versions = [created]
    for n in range(1, count):
        body = {**versions[-1], "birthDate": f"19{40 + n}-01-01"}
        versions.append(fhir.put(f"/Patient/{created['id']}", json=body, headers=JSON).json())
    return created["id"], versions


def test_instance_history_newest_first_with_entries_as_spec(fhir: httpx.Client) -> None:
    id_, versions = _versions(fhir, 3)
    fhir.delete(f"/Patient/{id_}")
    bundle = fhir.get(f"/Patient/{id_}/_history").json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    assert bundle["total"] == 4
    entries = bundle["entry"]
    assert [e["response"]["etag"] for e in entries] == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    deleted, *rest = entries
    assert "resource" not in deleted
    assert deleted["request"] == {"method": "DELETE", "url": f"Patient/{id_}"}
    assert [e["resource"] for e in rest] == versions[::-1]
    assert rest[-1]["request"] == {"method": "POST", "url": "Patient"}
    assert rest[-1]["response"]["status"] == "201 Created"
    assert rest[0]["request"] == {"method": "PUT", "url": f"Patient/{id_}"}
    assert all(e["fullUrl"].endswith(f"/Patient/{id_}") for e in entries)
    assert bundle["link"][0]["relation"] == "self"


def test_history_of_unknown_resource_is_404(fhir: httpx.Client) -> None:
    assert fhir.get("/Patient/nobody/_history").status_code == 404


def test_type_and_system_history(fhir: httpx.Client) -> None:
    patient_id, _ = _versions(fhir, 2)
    practitioner = fhir.post(
        "/Practitioner", json={"resourceType": "Practitioner"}, headers=JSON
    ).json()
    by_type = fhir.get("/Patient/_history").json()
    assert [
        (e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in by_type["entry"]
    ] == [(patient_id, "2"), (patient_id, "1")]
    system = fhir.get("/_history").json()
    assert [e["resource"]["resourceType"] for e in system["entry"]] == [
        "Practitioner",
        "Patient",
        "Patient",
    ]
    assert system["entry"][0]["resource"]["id"] == practitioner["id"]


def test_since_filters_older_versions(fhir: httpx.Client) -> None:
    id_, versions = _versions(fhir, 2)
    time.sleep(0.01)
    third = fhir.put(
        f"/Patient/{id_}", json={**versions[-1], "gender": "male"}, headers=JSON
    ).json()
    since = third["meta"]["lastUpdated"]
    bundle = fhir.get(f"/Patient/{id_}/_history", params={"_since": since}).json()
    assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"]] == ["3"]
    assert fhir.get("/_history", params={"_since": "yesterday"}).status_code == 400
    assert fhir.get("/_history", params={"_since": "2026-01-01T00:00:00"}).status_code == 400


def test_count_and_paging_forward_and_back(fhir: httpx.Client) -> None:
    id_, _ = _versions(fhir, 7)
    page = fhir.get(f"/Patient/{id_}/_history", params={"_count": 3}).json()
    seen = []
    pages = 0
    while True:
        pages += 1
        seen += [e["resource"]["meta"]["versionId"] for e in page["entry"]]
        links = {link["relation"]: link["url"] for link in page["link"]}
        if "next" not in links:
            break
        page = httpx.get(links["next"]).json()
    assert seen == ["7", "6", "5", "4", "3", "2", "1"] and pages == 3
    previous = {link["relation"]: link["url"] for link in page["link"]}["previous"]
    back = httpx.get(previous).json()
    assert [e["resource"]["meta"]["versionId"] for e in back["entry"]] == ["4", "3", "2"]


def test_paging_is_stable_while_data_changes(fhir: httpx.Client) -> None:
    id_, versions = _versions(fhir, 4)
    first = fhir.get(f"/Patient/{id_}/_history", params={"_count": 2}).json()
    fhir.put(f"/Patient/{id_}", json={**versions[-1], "gender": "male"}, headers=JSON)
    next_url = {link["relation"]: link["url"] for link in first["link"]}["next"]
    second = httpx.get(next_url).json()
    assert [e["resource"]["meta"]["versionId"] for e in first["entry"]] == ["4", "3"]
    assert [e["resource"]["meta"]["versionId"] for e in second["entry"]] == ["2", "1"]


def test_history_parameters_are_validated(fhir: httpx.Client) -> None:
    assert fhir.get("/_history", params={"_count": "many"}).status_code == 400
    assert fhir.get("/_history", params={"_at": "2026"}).status_code == 400
    assert fhir.get("/_history", params={"_page": "garbage!"}).status_code == 400
