"""Parameters common to all resources (`_id`, `_lastUpdated`, `_tag`, `_profile`, `_security`,
`_source`) and the ways in: GET and POST `_search` on a type, the system level (`_type`) and
compartments (search.html#Introduction, compartmentdefinition.html)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer
from tests.search.data import (
    CONFIDENTIALITY,
    JSON,
    PROFILE,
    SOURCE,
    TAGS,
    cpts,
    found,
    ids,
    link,
    loaded,
    refs,
    search,
)


@pytest.fixture
def fhir_cpts(live: LiveServer) -> Iterator[httpx.Client]:
    yield from loaded(live, "cpts", cpts)


# Patient meta (data.py): 1 tag pathway-patient, profile PROFILE, security R, source SOURCE;
# 2 tag pathway-patient, security N; 4 tag "other"; 3, 5, 6 none.
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"_tag": f"{TAGS}|pathway-patient"}, {"1", "2"}),
        ({"_tag": "pathway-patient"}, {"1", "2"}),
        ({"_tag": "other"}, {"4"}),
        ({"_tag": f"{TAGS}|"}, {"1", "2", "4"}),
        ({"_tag:not": f"{TAGS}|pathway-patient"}, {"3", "4", "5", "6"}),
        ({"_tag:missing": "true"}, {"3", "5", "6"}),
        ({"_profile": PROFILE}, {"1"}),
        ({"_profile": PROFILE + "-other"}, set()),
        ({"_security": f"{CONFIDENTIALITY}|R"}, {"1"}),
        ({"_security": "N"}, {"2"}),
        ({"_source": SOURCE}, {"1"}),
        ({"_source:missing": "true"}, {"2", "3", "4", "5", "6"}),
        ({"_id": "2,4"}, {"2", "4"}),
        ({"_id:missing": "false"}, {"1", "2", "3", "4", "5", "6"}),
    ],
)
def test_meta_parameters(fhir_cpts: httpx.Client, params: dict, expected: set[str]) -> None:
    assert found(fhir_cpts, "/Patient", params) == expected


def test_last_updated(fhir: httpx.Client) -> None:
    """`_lastUpdated` is an instant (millisecond precision): the search value's precision
    makes the range, the stored instant is a point."""
    first = fhir.put("/Patient/x", json={"resourceType": "Patient", "id": "x"}, headers=JSON)
    time.sleep(0.02)
    second = fhir.put(
        "/Practitioner/y", json={"resourceType": "Practitioner", "id": "y"}, headers=JSON
    )
    x, y = first.json()["meta"]["lastUpdated"], second.json()["meta"]["lastUpdated"]
    assert x < y  # 20 ms apart

    def patients_or_practitioners(value: str) -> set[str]:
        bundle = search(fhir, "/", {"_type": "Patient,Practitioner", "_lastUpdated": value})
        return set(refs(bundle))

    both = {"Patient/x", "Practitioner/y"}
    cases = {
        x: {"Patient/x"},
        f"eq{x}": {"Patient/x"},
        f"ne{x}": {"Practitioner/y"},
        f"gt{x}": {"Practitioner/y"},
        f"sa{x}": {"Practitioner/y"},
        f"ge{x}": both,
        f"le{x}": {"Patient/x"},
        f"lt{y}": {"Patient/x"},
        f"eb{y}": {"Patient/x"},
        f"le{y}": both,
        f"gt{y}": set(),
        f"ap{x}": both,  # widened by a day at least
        "gt2000": both,
        "lt2000": set(),
    }
    for value, expected in cases.items():
        assert patients_or_practitioners(value) == expected, value
    # Type level, and AND: after x and up to y.
    between = [("_lastUpdated", f"gt{x}"), ("_lastUpdated", f"le{y}")]
    assert found(fhir, "/Practitioner", between) == {"y"}
    # System level without _type: every type.
    assert set(refs(search(fhir, "/", {"_lastUpdated": f"ge{x}"}))) == both
    assert set(refs(search(fhir, "/", {"_lastUpdated": f"gt{x}", "_sort": "_lastUpdated"}))) == {
        "Practitioner/y"
    }


def test_system_search(fhir_cpts: httpx.Client) -> None:
    by_type = search(fhir_cpts, "/", {"_type": "Patient,Practitioner", "_id": "1,gp-1"})
    assert set(refs(by_type)) == {"Patient/1", "Practitioner/gp-1"}
    # Without _type, every type: Group/1 shares the id 1.
    assert set(refs(search(fhir_cpts, "/", {"_id": "1"}))) == {"Patient/1", "Group/1"}
    martins = search(fhir_cpts, "/", {"_type": "Patient,Practitioner", "name": "martin"})
    assert set(refs(martins)) == {"Patient/4", "Practitioner/gp-1"}
    assert set(refs(search(fhir_cpts, "/", {"_tag": "pathway-patient"}))) == {
        "Patient/1",
        "Patient/2",
    }
    assert link(by_type, "self").startswith(f"{str(fhir_cpts.base_url).rstrip('/')}?")


def test_system_search_unknown_type(fhir_cpts: httpx.Client) -> None:
    response = fhir_cpts.get("/", params={"_type": "Patient,Unicorn"})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_post_search(fhir_cpts: httpx.Client) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    response = fhir_cpts.post("/Patient/_search", content="name=dupont", headers=form)
    assert response.status_code == 200 and ids(response.json()) == ["1"]
    # The URL and the body together; repeated body parameters are ANDed.
    response = fhir_cpts.post(
        "/Patient/_search?gender=female", content="given=helene&given=marie", headers=form
    )
    assert ids(response.json()) == ["1"]
    response = fhir_cpts.post(
        "/Patient/_search", content="name=h%C3%A9l&_sort=-_id&_count=1", headers=form
    )
    bundle = response.json()
    assert ids(bundle) == ["2"]  # 1 and 2, the larger id first
    # The links are GET URLs carrying every parameter used (search.html#post).
    assert "name=h%C3%A9l" in link(bundle, "self") and "_page=" in link(bundle, "next")
    assert ids(search(fhir_cpts, link(bundle, "next"))) == ["1"]
    refused = fhir_cpts.post("/Patient/_search", json={"name": "dupont"})
    assert refused.status_code == 415


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("/Patient/1/Task", {}, {"t1", "t3"}),  # Task.for (patient) and focus
        ("/Patient/1/Task", {"status": "in-progress"}, {"t3"}),
        ("/Patient/1/Observation", {}, {"obs-glucose", "obs-bp-1"}),  # subject or performer
        ("/Patient/1/Observation", {"code": "85354-9"}, {"obs-bp-1"}),
        ("/Patient/2/CarePlan", {}, {"cp2"}),
        ("/Patient/1/Encounter", {}, {"enc-1"}),
        ("/Patient/1/Patient", {}, {"1"}),
        ("/Patient/nobody/Task", {}, set()),
    ],
)
def test_compartment(fhir_cpts: httpx.Client, path: str, params: dict, expected: set[str]) -> None:
    assert found(fhir_cpts, path, params) == expected


def test_compartment_self_link_and_outside_types(fhir_cpts: httpx.Client) -> None:
    bundle = search(fhir_cpts, "/Patient/1/Task", {"status": "requested"})
    assert link(bundle, "self").endswith("/Patient/1/Task?status=requested")
    assert fhir_cpts.get("/Patient/1/Practitioner").status_code == 404


def test_updates_and_deletes_change_what_is_found(fhir: httpx.Client) -> None:
    """The index follows the current version: an update replaces the old values, a deletion
    removes the resource from every search."""
    patient = {"resourceType": "Patient", "id": "u", "name": [{"family": "Dupont"}]}
    assert fhir.put("/Patient/u", json=patient, headers=JSON).is_success
    assert found(fhir, "/Patient", {"family": "dupont"}) == {"u"}
    patient["name"] = [{"family": "Durand"}]
    assert fhir.put("/Patient/u", json=patient, headers=JSON).is_success
    assert found(fhir, "/Patient", {"family": "dupont"}) == set()
    assert found(fhir, "/Patient", {"family": "durand"}) == {"u"}
    assert found(fhir, "/Patient", {"family:missing": "false"}) == {"u"}
    assert fhir.delete("/Patient/u").status_code == 204
    assert found(fhir, "/Patient", {"family": "durand"}) == set()
    assert found(fhir, "/Patient", {}) == set()
    assert found(fhir, "/Patient", {"family:missing": "true"}) == set()
    assert set(refs(search(fhir, "/", {"_id": "u"}))) == set()
