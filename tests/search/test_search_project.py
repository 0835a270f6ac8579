"""The project's own search parameters (profiles/search-parameters/: Task `due-date`, Task and
CarePlan `pathway`) and the two queries the CPTS applications live on: the nurse's (IDEL)
worklist and the INS lookup, with their exact expected Bundles."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer
from tests.search.data import INS, PATHWAY, TASKS, cpts, found, link, loaded, refs, search


@pytest.fixture
def fhir_cpts(live: LiveServer) -> Iterator[httpx.Client]:
    yield from loaded(live, "cpts", cpts)


# Due dates (Task.restriction.period.end) in UTC: t4 day 11-23 [11-22T23:00, 11-23T23:00); t5, t7
# day 11-24 [11-23T23:00, 11-24T23:00); t2 11-24T17:00; t1 11-25T11:00; t6 day 11-26
# [11-25T23:00, 11-26T23:00); t3 none. The Paris day 2026-11-24 is [11-23T23:00, 11-24T23:00).
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24", {"t2", "t5", "t7"}),
        ("lt2026-11-24", {"t4"}),
        ("le2026-11-24", {"t4", "t2", "t5", "t7"}),
        ("gt2026-11-24", {"t1", "t6"}),
        ("sa2026-11-24", {"t1", "t6"}),
        ("ge2026-11-25", {"t1", "t6"}),  # t1 inside the 25th, t6 after it
        ("eb2026-11-25", {"t4", "t2", "t5", "t7"}),
        ("ne2026-11-24", {"t1", "t4", "t6"}),  # never t3, which has no due date
        ("2026-11-25T12:00", {"t1"}),  # 12:00 in Paris = 11:00Z
        ("2026-11-24T18:00:00+01:00", {"t2"}),
        ("2026-11", {"t1", "t2", "t4", "t5", "t6", "t7"}),
    ],
)
def test_due_date(fhir_cpts: httpx.Client, value: str, expected: set[str]) -> None:
    assert found(fhir_cpts, "/Task", {"due-date": value}) == expected


def test_due_date_missing(fhir_cpts: httpx.Client) -> None:
    assert found(fhir_cpts, "/Task", {"due-date:missing": "true"}) == {"t3"}


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        # Tasks: the pathway extension (t1, t7 sortie-hospitalisation; t2 insuffisance-cardiaque).
        ("/Task", "sortie-hospitalisation", {"t1", "t7"}),
        ("/Task", f"{PATHWAY}|insuffisance-cardiaque", {"t2"}),
        ("/Task", f"{PATHWAY}|", {"t1", "t2", "t7"}),
        ("/Task", "http://other.example|sortie-hospitalisation", set()),
        # CarePlans: the category (cp1) or the extension (cp2).
        ("/CarePlan", "sortie-hospitalisation", {"cp1"}),
        ("/CarePlan", "insuffisance-cardiaque", {"cp2"}),
        ("/CarePlan", f"{PATHWAY}|", {"cp1", "cp2"}),
    ],
)
def test_pathway(fhir_cpts: httpx.Client, path: str, value: str, expected: set[str]) -> None:
    assert found(fhir_cpts, path, {"pathway": value}) == expected


def test_pathway_missing_and_not(fhir_cpts: httpx.Client) -> None:
    assert found(fhir_cpts, "/CarePlan", {"pathway:missing": "true"}) == {"cp3"}
    assert found(fhir_cpts, "/Task", {"pathway:not": "sortie-hospitalisation"}) == {
        *("t2", "t3", "t4", "t5", "t6"),
    }


def test_idel_worklist(fhir_cpts: httpx.Client) -> None:
    """GET /Task?owner=Practitioner/idel-1&status=requested,accepted,in-progress
    &_sort=due-date&_count=50&_include=Task:patient"""
    params = {
        "owner": "Practitioner/idel-1",
        "status": "requested,accepted,in-progress",
        "_sort": "due-date",
        "_count": "50",
        "_include": "Task:patient",
    }
    bundle = search(fhir_cpts, "/Task", params)
    # idel-1 owns t1, t2, t3, t4, t6, t7; t4 is completed. Earliest deadline first (the start
    # of each due range): t7 (day 11-24 from 11-23T23:00Z), t2 (11-24T17:00Z), t1
    # (11-25T11:00Z), t6 (day 11-26 from 11-25T23:00Z), and t3 without a due date last.
    assert refs(bundle) == ["Task/t7", "Task/t2", "Task/t1", "Task/t6", "Task/t3"]
    # Their patients: 5 (t7), 2 (t2), 1 (t1 and t3); t6 is for Group/1, not a patient.
    assert sorted(refs(bundle, "include")) == ["Patient/1", "Patient/2", "Patient/5"]
    assert bundle["total"] == 5
    assert [x["relation"] for x in bundle["link"]] == ["self"]
    base = str(fhir_cpts.base_url).rstrip("/")
    expected_tasks = {t["id"]: t for t in TASKS}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"] == f"{base}/{resource['resourceType']}/{resource['id']}"
        if resource["resourceType"] == "Task":
            stored = {k: v for k, v in resource.items() if k != "meta"}
            assert stored == expected_tasks[resource["id"]]  # the whole resource, as written
            assert resource["meta"]["versionId"] == "1"
    assert link(bundle, "self") == (
        f"{base}/Task?owner=Practitioner%2Fidel-1&status=requested%2Caccepted%2Cin-progress"
        "&_sort=due-date&_count=50&_include=Task%3Apatient"
    )


def test_ins_lookup(fhir_cpts: httpx.Client) -> None:
    """GET /Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|279035121518989"""
    bundle = search(fhir_cpts, "/Patient", {"identifier": f"{INS}|279035121518989"})
    base = str(fhir_cpts.base_url).rstrip("/")
    assert bundle["total"] == 1
    (entry,) = bundle["entry"]
    assert entry["fullUrl"] == f"{base}/Patient/1"
    assert entry["search"] == {"mode": "match"}
    assert entry["resource"] == fhir_cpts.get("/Patient/1").json()
    # The INS of another patient, an unknown INS, the right value under another system.
    assert found(fhir_cpts, "/Patient", {"identifier": f"{INS}|248017512345678"}) == {"2"}
    assert found(fhir_cpts, "/Patient", {"identifier": f"{INS}|100000000000000"}) == set()
    assert found(fhir_cpts, "/Patient", {"identifier": "urn:oid:1.2.3|279035121518989"}) == set()
