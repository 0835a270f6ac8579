"""Concurrent writers never lose an update (http.html#concurrency)."""

from __future__ import annotations

import threading

import httpx

from tests.rest.resources import JSON, patient

WRITERS = 20


def test_twenty_writers_with_if_match(fhir: httpx.Client, live) -> None:
    """Each writer reads, then updates with If-Match until it wins: every write lands exactly
    once, versions increase without gaps, and the losers of each round get 412."""
    created = fhir.post("/Patient", json=patient(), headers=JSON).json()
    url = f"{live.url}/Patient/{created['id']}"
    barrier = threading.Barrier(WRITERS)
    results: dict[int, list[int]] = {}

    def writer(number: int) -> None:
        statuses = []
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            while True:
                current = client.get(url)
                body = current.json()
                body.setdefault("telecom", []).append(
                    {"system": "phone", "value": f"06000000{number:02d}"}
                )
                response = client.put(
                    url, json=body, headers={**JSON, "if-match": current.headers["etag"]}
                )
                statuses.append(response.status_code)
                if response.status_code == 200:
                    break
                assert response.status_code == 412, response.text
        results[number] = statuses

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert len(results) == WRITERS
    final = fhir.get(f"/Patient/{created['id']}").json()
    assert final["meta"]["versionId"] == str(WRITERS + 1)
    phones = sorted(t["value"] for t in final["telecom"])
    assert phones == sorted(f"06000000{n:02d}" for n in range(WRITERS))  # no update lost
    losses = sum(s.count(412) for s in results.values())
    assert losses > 0  # the race happened
    history = fhir.get(f"/Patient/{created['id']}/_history", params={"_count": WRITERS + 5}).json()
    versions = [int(e["resource"]["meta"]["versionId"]) for e in history["entry"]]
    assert versions == list(range(WRITERS + 1, 0, -1))


def test_concurrent_updates_without_if_match_all_land(fhir: httpx.Client, live) -> None:
    """Without If-Match the last writer wins, but no write is lost nor gets an error."""
    created = fhir.post("/Patient", json=patient(), headers=JSON).json()
    url = f"{live.url}/Patient/{created['id']}"
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def writer(number: int) -> None:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            body = {**created, "birthDate": f"19{50 + number}-01-01"}
            statuses.append(client.put(url, json=body, headers=JSON).status_code)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * 10
    assert fhir.get(url).json()["meta"]["versionId"] == "11"


def test_concurrent_conditional_creates_make_one_resource(fhir: httpx.Client, live) -> None:
    barrier = threading.Barrier(8)
    statuses: list[int] = []
    criteria = "identifier=urn:oid:1.2.250.1.213.1.4.8|279035121518989"

    def creator() -> None:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            statuses.append(
                client.post(
                    f"{live.url}/Patient",
                    json=patient(ins="279035121518989"),
                    headers={**JSON, "if-none-exist": criteria},
                ).status_code
            )

    threads = [threading.Thread(target=creator) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200] * 7 + [201]
    assert fhir.get("/Patient", params={"_summary": "count"}).json()["total"] == 1
