"""`_summary`, `_elements` (search.html#summary, #elements), `_include`, `_revinclude` and
`:iterate` (#include), the include cap, and the search modes of the entries (match, include,
outcome)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from fhir_server.search.summary import SUBSETTED
from tests.conftest import LiveServer, make_server
from tests.search.data import cpts, entries, load, loaded, problems, refs, search


@pytest.fixture
def fhir_cpts(live: LiveServer) -> Iterator[httpx.Client]:
    yield from loaded(live, "cpts", cpts)


def only(bundle: dict) -> dict:
    (entry,) = entries(bundle)
    return entry["resource"]


def is_subsetted(resource: dict) -> bool:
    return any(t.get("code") == "SUBSETTED" for t in resource["meta"].get("tag", []))


def test_summary(fhir_cpts: httpx.Client) -> None:
    full = fhir_cpts.get("/Patient/1").json()
    # true: the summary elements of R4 Patient (text and generalPractitioner are not).
    summary = only(search(fhir_cpts, "/Patient", {"_id": "1", "_summary": "true"}))
    assert set(summary) == {
        *("resourceType", "id", "meta", "identifier", "active", "name"),
        *("gender", "birthDate", "address"),
    }
    assert summary["name"] == full["name"] and summary["identifier"] == full["identifier"]
    assert summary["meta"]["tag"] == [*full["meta"]["tag"], SUBSETTED]
    # text: id, meta, text and the mandatory top-level elements (Patient has none).
    text = only(search(fhir_cpts, "/Patient", {"_id": "1", "_summary": "text"}))
    assert set(text) == {"resourceType", "id", "meta", "text"} and is_subsetted(text)
    task = only(search(fhir_cpts, "/Task", {"_id": "t1", "_summary": "text"}))
    assert set(task) == {"resourceType", "id", "meta", "status", "intent"}  # t1 has no text
    # Observation.code is mandatory too (a complex element).
    obs = only(search(fhir_cpts, "/Observation", {"_id": "obs-bp-1", "_summary": "text"}))
    assert set(obs) == {"resourceType", "id", "meta", "status", "code"}
    # data: everything but the text.
    data = only(search(fhir_cpts, "/Patient", {"_id": "1", "_summary": "data"}))
    assert set(data) == set(full) - {"text"} and is_subsetted(data)
    # false: the whole resource, not marked.
    assert only(search(fhir_cpts, "/Patient", {"_id": "1", "_summary": "false"})) == full
    # count: the total only.
    count = search(fhir_cpts, "/Patient", {"gender": "female", "_summary": "count"})
    assert count["total"] == 3 and "entry" not in count


def test_elements(fhir_cpts: httpx.Client) -> None:
    full = fhir_cpts.get("/Patient/1").json()
    patient = only(search(fhir_cpts, "/Patient", {"_id": "1", "_elements": "name,gender"}))
    assert set(patient) == {"resourceType", "id", "meta", "name", "gender"}
    assert patient["name"] == full["name"]
    assert patient["meta"]["tag"] == [*full["meta"]["tag"], SUBSETTED]
    # Mandatory elements come anyway (Task.status, Task.intent).
    task = only(search(fhir_cpts, "/Task", {"_id": "t1", "_elements": "for"}))
    assert set(task) == {"resourceType", "id", "meta", "status", "intent", "for"}
    # A choice element by its name without [x]: Observation.value[x].
    obs = only(search(fhir_cpts, "/Observation", {"_id": "obs-glucose", "_elements": "value"}))
    assert set(obs) == {"resourceType", "id", "meta", "status", "code", "valueQuantity"}


@pytest.mark.parametrize(
    ("params", "matches", "included"),
    [
        ({"_id": "t1", "_include": "Task:patient"}, ["Task/t1"], {"Patient/1"}),
        ({"_id": "t1", "_include": "Task:owner"}, ["Task/t1"], {"Practitioner/idel-1"}),
        (
            {"_id": "t1", "_include": "Task:*"},
            ["Task/t1"],
            # for, owner, basedOn, requester
            {"Patient/1", "Practitioner/idel-1", "CarePlan/cp1", "Practitioner/gp-1"},
        ),
        (
            {"_id": "t1", "_include": "*"},
            ["Task/t1"],
            {"Patient/1", "Practitioner/idel-1", "CarePlan/cp1", "Practitioner/gp-1"},
        ),
        ({"_id": "t6", "_include": "Task:patient"}, ["Task/t6"], set()),  # for is Group/1
        ({"_id": "t6", "_include": "Task:subject:Group"}, ["Task/t6"], {"Group/1"}),
        ({"_id": "t6", "_include": "Task:subject:Patient"}, ["Task/t6"], set()),
        # Two matches sharing a target: included once.
        ({"_id": "t1,t3", "_include": "Task:patient"}, ["Task/t1", "Task/t3"], {"Patient/1"}),
        # Reverse: what points to the match.
        (
            {"_id": "1", "_revinclude": "Observation:subject"},
            ["Patient/1"],
            {"Observation/obs-glucose", "Observation/obs-bp-1"},
        ),
        (
            {"_id": "1", "_revinclude": ["Task:patient", "Observation:patient"]},
            ["Patient/1"],
            {"Task/t1", "Task/t3", "Observation/obs-glucose", "Observation/obs-bp-1"},
        ),
        # Everything pointing to Patient/1 (not obs-remote, another server's Patient/1, nor
        # obs-logical, an identifier only).
        (
            {"_id": "1", "_revinclude": "*"},
            ["Patient/1"],
            {
                *("Observation/obs-glucose", "Observation/obs-bp-1", "Task/t1", "Task/t3"),
                *("CarePlan/cp1", "Encounter/enc-1"),
            },
        ),
        # Without :iterate, CarePlan:subject applies to the matches (Tasks) only: nothing.
        (
            {"_id": "t1", "_include": ["Task:based-on", "CarePlan:subject"]},
            ["Task/t1"],
            {"CarePlan/cp1"},
        ),
        # With :iterate it applies to the included CarePlan, then to its Patient's GP.
        (
            {
                "_id": "t1",
                "_include": "Task:based-on",
                "_include:iterate": ["CarePlan:subject", "Patient:general-practitioner"],
            },
            ["Task/t1"],
            {"CarePlan/cp1", "Patient/1", "Practitioner/gp-1"},
        ),
        # :iterate on what _revinclude brought: the owners of the patient's tasks.
        (
            {"_id": "1", "_revinclude": "Task:patient", "_include:iterate": "Task:owner"},
            ["Patient/1"],
            {"Task/t1", "Task/t3", "Practitioner/idel-1"},
        ),
        # A match is never repeated as an include.
        (
            {
                "_id": "1",
                "_revinclude": "Observation:subject",
                "_include:iterate": "Observation:subject",
            },
            ["Patient/1"],
            {"Observation/obs-glucose", "Observation/obs-bp-1"},
        ),
    ],
)
def test_include(
    fhir_cpts: httpx.Client, params: dict, matches: list[str], included: set[str]
) -> None:
    bundle = search(fhir_cpts, f"/{matches[0].split('/')[0]}", params)
    assert refs(bundle) == matches
    assert set(refs(bundle, "include")) == included
    assert len(refs(bundle, "include")) == len(included)
    assert not problems(bundle)
    assert bundle["total"] == len(matches)  # includes are not counted


def test_search_modes_and_full_urls(fhir_cpts: httpx.Client) -> None:
    bundle = search(fhir_cpts, "/Task", {"_id": "t1", "_include": "Task:patient", "unknown": "x"})
    base = str(fhir_cpts.base_url).rstrip("/")
    assert [(e.get("fullUrl"), e["search"]["mode"]) for e in bundle["entry"]] == [
        (f"{base}/Task/t1", "match"),
        (f"{base}/Patient/1", "include"),
        (None, "outcome"),
    ]
    assert bundle["entry"][2]["resource"]["resourceType"] == "OperationOutcome"


def test_summary_applies_to_includes(fhir_cpts: httpx.Client) -> None:
    bundle = search(
        fhir_cpts, "/Task", {"_id": "t1", "_include": "Task:patient", "_elements": "status"}
    )
    (patient,) = [e["resource"] for e in entries(bundle, "include")]
    assert set(patient) == {"resourceType", "id", "meta"} and is_subsetted(patient)


@pytest.fixture
def small(fhir: httpx.Client, live: LiveServer) -> Iterator[httpx.Client]:
    """A second server on the (just emptied) database of `live`: FHIR_MAX_INCLUDE=2."""
    server = make_server(live.server.settings.database_url, max_include=2)
    other = LiveServer(server)
    try:
        with httpx.Client(
            base_url=other.url, timeout=30, headers={"accept": "application/fhir+json"}
        ) as client:
            yield client
    finally:
        other.stop()
        server.close()


def test_include_cap(small: httpx.Client) -> None:
    load(small, cpts())
    # t1 alone points to four resources; the cap keeps two and says so.
    bundle = search(small, "/Task", {"_id": "t1", "_include": "*"})
    assert refs(bundle) == ["Task/t1"]
    assert len(refs(bundle, "include")) == 2
    assert set(refs(bundle, "include")) < {
        "Patient/1",
        "Practitioner/idel-1",
        "CarePlan/cp1",
        "Practitioner/gp-1",
    }
    assert problems(bundle) == ["Included resources were capped at 2"]
    # Under the cap: nothing said.
    bundle = search(small, "/Task", {"_id": "t1", "_include": "Task:patient"})
    assert refs(bundle, "include") == ["Patient/1"] and not problems(bundle)
