"""Reference search (search.html#reference), chaining (#chaining) and reverse chaining (#has).
Data: tests/search/data.py."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer
from tests.search.data import INS, LOINC, cpts, found, loaded


@pytest.fixture
def fhir_cpts(live: LiveServer) -> Iterator[httpx.Client]:
    yield from loaded(live, "cpts", cpts)


# Observation subjects: glucose and bp-1 Patient/1; bp-2 Patient/3; sys-high, sys-low Patient/2;
# nosystem Group/1 (same id as Patient/1); local Patient/4; remote the absolute
# http://other.example/fhir/Patient/1; logical only an identifier (the INS of Patient/1).
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"subject": "Patient/1"}, {"obs-glucose", "obs-bp-1"}),
        # A plain id matches every type with that id: Patient/1 and Group/1.
        ({"subject": "1"}, {"obs-glucose", "obs-bp-1", "obs-nosystem"}),
        ({"subject:Patient": "1"}, {"obs-glucose", "obs-bp-1"}),
        ({"subject:Group": "1"}, {"obs-nosystem"}),
        ({"subject": "Group/1"}, {"obs-nosystem"}),
        ({"subject": "Patient/1/_history/3"}, {"obs-glucose", "obs-bp-1"}),  # version ignored
        ({"subject": "http://other.example/fhir/Patient/1"}, {"obs-remote"}),
        ({"subject": "Patient/2,Patient/3"}, {"obs-sys-high", "obs-sys-low", "obs-bp-2"}),
        # `patient` is subject.where(resolve() is Patient): not the Group, not the remote one
        # (an absolute URL is kept as a URL, never taken for a local resource).
        ({"patient": "1"}, {"obs-glucose", "obs-bp-1"}),
        ({"patient": "Group/1"}, set()),
        ({"subject:identifier": f"{INS}|279035121518989"}, {"obs-logical"}),
        ({"subject:identifier": "279035121518989"}, {"obs-logical"}),
        ({"subject:identifier": f"{INS}|248017512345678"}, set()),
        ({"subject:missing": "true"}, set()),
        ({"encounter": "enc-1"}, {"obs-glucose"}),
        ({"encounter:missing": "false"}, {"obs-glucose"}),
        ({"performer": "Practitioner/idel-1"}, {"obs-glucose"}),
    ],
)
def test_observation_references(fhir_cpts: httpx.Client, params: dict, expected: set[str]) -> None:
    assert found(fhir_cpts, "/Observation", params) == expected


def test_absolute_url_of_this_server_is_local(fhir_cpts: httpx.Client) -> None:
    base = str(fhir_cpts.base_url).rstrip("/")
    assert found(fhir_cpts, "/Observation", {"subject": f"{base}/Patient/1"}) == {
        "obs-glucose",
        "obs-bp-1",
    }


def test_task_patient_is_only_a_patient_for(fhir_cpts: httpx.Client) -> None:
    """Task?patient= is Task.for.where(resolve() is Patient): t6 is for Group/1."""
    assert found(fhir_cpts, "/Task", {"patient": "1"}) == {"t1", "t3"}
    assert found(fhir_cpts, "/Task", {"patient": "Patient/1"}) == {"t1", "t3"}
    assert found(fhir_cpts, "/Task", {"subject": "1"}) == {"t1", "t3", "t6"}
    assert found(fhir_cpts, "/Task", {"patient:missing": "true"}) == {"t6"}
    assert found(fhir_cpts, "/Task", {"owner": "Practitioner/idel-2"}) == {"t5"}
    assert found(fhir_cpts, "/Task", {"owner:Practitioner": "idel-2"}) == {"t5"}


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        # One level: the subject's identifier or name.
        (
            "/Observation",
            {"subject:Patient.identifier": f"{INS}|279035121518989"},
            {"obs-glucose", "obs-bp-1"},  # not obs-logical: a chain follows literal references
        ),
        ("/Observation", {"subject.name": "dupont"}, {"obs-glucose", "obs-bp-1"}),
        ("/Observation", {"subject:Patient.name": "lefèvre"}, {"obs-bp-2"}),
        ("/Observation", {"patient.gender": "male"}, {"obs-bp-2", "obs-local"}),  # 3 and 4
        (
            "/Observation",
            {"subject:Patient.name": "dupont,durand"},
            {"obs-glucose", "obs-bp-1", "obs-sys-high", "obs-sys-low"},
        ),
        ("/Task", {"owner.name": "petit"}, {"t5"}),
        ("/Task", {"owner:Practitioner.family:exact": "Bernard", "status": "completed"}, {"t4"}),
        ("/Task", {"patient.identifier": f"{INS}|248017512345678"}, {"t2"}),
        # Two levels: the Task's CarePlan's subject; the Observation's encounter's subject.
        ("/Task", {"based-on:CarePlan.subject:Patient.name": "dupont"}, {"t1"}),
        ("/Task", {"based-on:CarePlan.patient.name": "durand"}, {"t2"}),
        ("/Observation", {"encounter.subject.name": "dupont"}, {"obs-glucose"}),
        ("/Observation", {"encounter.subject.name": "durand"}, set()),  # enc-2 has none
    ],
)
def test_chaining(fhir_cpts: httpx.Client, path: str, params: dict, expected: set[str]) -> None:
    assert found(fhir_cpts, path, params) == expected


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        # Patients that a blood-pressure Observation points to (bp-1 → 1, bp-2 → 3).
        ("/Patient", {"_has:Observation:subject:code": f"{LOINC}|85354-9"}, {"1", "3"}),
        ("/Patient", {"_has:Observation:patient:code": "85354-9"}, {"1", "3"}),
        ("/Patient", {"_has:Observation:patient:code": "8480-6"}, {"2"}),  # sys-high/low
        # Practitioners owning a completed task (t4).
        ("/Practitioner", {"_has:Task:owner:status": "completed"}, {"idel-1"}),
        ("/Practitioner", {"_has:Task:owner:status": "requested"}, {"idel-1", "idel-2"}),
        # Nested: patients of a CarePlan that an accepted Task is based on (t2 → cp2 → 2).
        ("/Patient", {"_has:CarePlan:patient:_has:Task:based-on:status": "accepted"}, {"2"}),
        (
            "/Patient",
            {"_has:CarePlan:subject:_has:Task:based-on:pathway": "sortie-hospitalisation"},
            {"1"},  # t1 → cp1 → 1 (t7 has the pathway but no CarePlan)
        ),
        # Two _has are ANDed: a BP panel AND a Task in progress (t3 for 1).
        (
            "/Patient",
            {"_has:Observation:patient:code": "85354-9", "_has:Task:patient:status": "in-progress"},
            {"1"},
        ),
        # A chain inside a _has: patients with a Task owned by "Petit" (t5 → 4).
        ("/Patient", {"_has:Task:patient:owner.name": "petit"}, {"4"}),
        # The Group is pointed to by obs-nosystem, but the search is on Patients only.
        ("/Patient", {"_has:Observation:subject:code": "local-1"}, {"4"}),
        ("/Group", {"_has:Observation:subject:code": "local-1"}, {"1"}),
    ],
)
def test_has(fhir_cpts: httpx.Client, path: str, params: dict, expected: set[str]) -> None:
    assert found(fhir_cpts, path, params) == expected
