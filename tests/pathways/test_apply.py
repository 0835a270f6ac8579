"""`PlanDefinition/$apply` over HTTP on the demo CPTS: one CarePlan and its Tasks per pathway,
due dates computed by hand from the calendar (daylight saving starts on 29 March 2026 and on
28 March 2027; January has 31 days, February 2027 has 28), owners from the care team or
unassigned, conditions, dependencies, idempotency under concurrency, a CPTS's change of a
deadline, and errors that store nothing."""

from __future__ import annotations

import copy
import threading
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from fhir_server.demo import load_demo
from fhir_server.server import Server
from tests.rest.resources import JSON, patient

CPTS = "https://cpts-fhir.org/fhir"
STEP_URL = f"{CPTS}/StructureDefinition/pathway-step"
ROLE = f"{CPTS}/CodeSystem/care-role"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
END = "T23:59:59+01:00"  # the end of a local day in winter
SUMMER_END = "T23:59:59+02:00"


@pytest.fixture
def cpts(api: httpx.Client, server: Server) -> httpx.Client:
    """The demo CPTS: Mme Dupont's care team (GP, IDEL, pharmacist), her stay that ended on
    Monday 23 November 2026 at 15:00, two more patients without a care team."""
    load_demo(server)
    return api


def put(api: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    response = api.put(f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=JSON)
    assert response.status_code in (200, 201), response.text
    return response.json()


def apply(api: httpx.Client, pathway: str, subject: str, **params: str) -> httpx.Response:
    parameters: list[dict[str, Any]] = [
        {"name": "subject", "valueReference": {"reference": subject}}
    ]
    for name, value in params.items():
        kind = "valueDateTime" if name == "trigger" else "valueString"
        parameters.append({"name": name, kind: value})
    body = {"resourceType": "Parameters", "parameter": parameters}
    return api.post(f"/PlanDefinition/{pathway}/$apply", json=body, headers=JSON)


def applied(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    careplan = response.json()
    assert careplan["resourceType"] == "CarePlan"
    return careplan


def tasks_of(api: httpx.Client, careplan: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """The Tasks of a CarePlan by (step, occurrence)."""
    found = api.get(
        "/Task", params={"based-on": f"CarePlan/{careplan['id']}", "_count": 200}
    ).json()
    tasks = {}
    for entry in found.get("entry", []):
        task = entry["resource"]
        step = task["code"]["coding"][0]["code"].split(".", 1)[1]
        tasks[(step, rule(task, "occurrence"))] = task
    assert len(tasks) == len(careplan["activity"]) == found["total"]
    assert {a["reference"]["reference"] for a in careplan["activity"]} == {
        f"Task/{t['id']}" for t in tasks.values()
    }
    return tasks


def rule(task: dict[str, Any], name: str) -> Any:
    (extension,) = [e for e in task["extension"] if e["url"] == STEP_URL]
    values = [
        next(v for k, v in sub.items() if k.startswith("value"))
        for sub in extension["extension"]
        if sub["url"] == name
    ]
    return values if name == "dependsOn" else (values[0] if values else None)


def due(task: dict[str, Any]) -> str:
    return task["restriction"]["period"]["end"]


def owner(task: dict[str, Any]) -> str | None:
    return (task.get("owner") or {}).get("reference")


def role_of(task: dict[str, Any]) -> str:
    (concept,) = task["performerType"]
    return concept["coding"][0]["code"]


def member(role: str, reference: str, **extra: Any) -> dict[str, Any]:
    """A care-team participant holding a care role."""
    return {
        "role": [{"coding": [{"system": ROLE, "code": role}], "text": role}],
        "member": {"reference": reference},
        **extra,
    }


def care_team(id_: str, subject: str, *members: dict[str, Any], **extra: Any) -> dict:
    return {
        "resourceType": "CareTeam",
        "id": id_,
        "status": "active",
        "subject": {"reference": subject},
        "participant": list(members),
        **extra,
    }


def nyha(id_: str, subject: str, when: str, answer: tuple[str, str], **extra: Any) -> dict:
    """An NYHA functional class (LOINC 88020-3) observed on `when`."""
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "88020-3"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": when,
        "valueCodeableConcept": {"coding": [{"system": answer[0], "code": answer[1]}]},
        **extra,
    }


CLASS_II = (LOINC, "LA28405-1")
CLASS_III = (LOINC, "LA28406-9")
CLASS_IV_SNOMED = (SNOMED, "422293003")


# -- heart failure ---------------------------------------------------------------------------------


def test_heart_failure(cpts: httpx.Client) -> None:
    """NYHA III: 23 tasks from the discharge on Monday 23 November 2026 15:00; the two-weekly
    visits wait for the weekly ones and cross the spring change of 2027."""
    put(
        cpts,
        care_team(
            "team-dupont-cpts",
            "Patient/pat-dupont",
            member("coordinator", "Practitioner/coord-durand"),
            # No longer in the team: the cardiology step stays unassigned.
            member(
                "cardiologist",
                "Practitioner/cardio-robert",
                period={"start": "2025-01-01", "end": "2026-01-01"},
            ),
        ),
    )
    put(
        cpts,
        care_team(
            "team-dupont-old",
            "Patient/pat-dupont",
            member("cardiologist", "Practitioner/cardio-robert"),
            status="inactive",
        ),
    )
    put(cpts, nyha("nyha-dupont", "Patient/pat-dupont", "2026-11-22T10:00:00+01:00", CLASS_III))

    response = apply(
        cpts,
        "heart-failure",
        "Patient/pat-dupont",
        encounter="Encounter/stay-dupont",
        organization="Organization/cpts-demo",
    )
    careplan = applied(response)
    assert response.headers["location"].endswith(f"/CarePlan/{careplan['id']}/_history/1")
    assert careplan["status"] == "active" and careplan["intent"] == "plan"
    assert careplan["instantiatesCanonical"] == [f"{CPTS}/PlanDefinition/heart-failure|1.0.0"]
    assert careplan["identifier"] == [
        {"system": f"{CPTS}/sid/pathway-careplan", "value": "heart-failure|pat-dupont|stay-dupont"}
    ]
    assert careplan["period"] == {"start": "2026-11-23T15:00:00+01:00"}
    assert careplan["subject"] == {"reference": "Patient/pat-dupont"}
    assert careplan["encounter"] == {"reference": "Encounter/stay-dupont"}
    assert careplan["author"] == {"reference": "Organization/cpts-demo"}
    assert {t["reference"] for t in careplan["careTeam"]} == {
        "CareTeam/team-dupont",
        "CareTeam/team-dupont-cpts",
    }
    pathway = {"system": f"{CPTS}/CodeSystem/pathway", "code": "heart-failure"}
    assert careplan["category"] == [{"coding": [pathway]}]

    tasks = tasks_of(cpts, careplan)
    weekly = [f"2026-11-30{END}", f"2026-12-07{END}", f"2026-12-14{END}", f"2026-12-21{END}"]
    weekly += [f"2026-12-28{END}", f"2027-01-04{END}", f"2027-01-11{END}", f"2027-01-18{END}"]
    every_two_weeks = [f"2027-02-01{END}", f"2027-02-15{END}", f"2027-03-01{END}"]
    every_two_weeks += [f"2027-03-15{END}", f"2027-03-29{SUMMER_END}", f"2027-04-12{SUMMER_END}"]
    every_two_weeks += [f"2027-04-26{SUMMER_END}", f"2027-05-10{SUMMER_END}"]
    expected = {
        ("inclusion", 1): (f"2026-11-23{END}", "Practitioner/coord-durand"),
        ("gp-visit", 1): (f"2026-11-30{END}", "Practitioner/gp-martin"),
        **{
            ("nurse-follow-up", k): (d, "Practitioner/idel-bernard")
            for k, d in enumerate(weekly, 1)
        },
        **{
            ("nurse-extended-follow-up", k): (d, "Practitioner/idel-bernard")
            for k, d in enumerate(every_two_weeks, 1)
        },
        ("self-monitoring", 1): (f"2026-11-30{END}", "Patient/pat-dupont"),
        ("therapeutic-education", 1): (f"2027-01-23{END}", "Practitioner/coord-durand"),
        ("medication-review", 1): (f"2026-12-23{END}", "Practitioner/pharma-petit"),
        ("cardiologist-visit", 1): (f"2027-01-23{END}", None),
        ("yearly-review", 1): (f"2027-11-23{END}", "Practitioner/gp-martin"),
    }
    assert {key: (due(t), owner(t)) for key, t in tasks.items()} == expected

    weekly_ids = [f"Task/{tasks[('nurse-follow-up', k)]['id']}" for k in range(1, 9)]
    for key, task in tasks.items():
        waiting = key[0] == "nurse-extended-follow-up"
        assert task["status"] == ("draft" if waiting else "requested")
        assert [r["reference"] for r in rule(task, "dependsOn")] == (weekly_ids if waiting else [])
        start = "2027-01-18T23:59:59+01:00" if waiting else "2026-11-23T15:00:00+01:00"
        assert task["restriction"]["period"]["start"] == start
        assert task["basedOn"] == [{"reference": f"CarePlan/{careplan['id']}"}]
        assert task["for"] == {"reference": "Patient/pat-dupont"}
        assert task["encounter"] == {"reference": "Encounter/stay-dupont"}
        assert task["requester"] == {"reference": "Organization/cpts-demo"}
        assert task["intent"] == "order"
        assert task["identifier"] == [
            {
                "system": f"{CPTS}/sid/pathway-task",
                "value": f"heart-failure|pat-dupont|stay-dupont|{key[0]}|{key[1]}",
            }
        ]
        assert task["instantiatesCanonical"] == f"{CPTS}/ActivityDefinition/heart-failure-{key[0]}"
        assert rule(task, "required") is (key[0] != "self-monitoring")
    assert rule(tasks[("nurse-extended-follow-up", 3)], "dueWithin") == {
        "value": 6,
        "system": "http://unitsofmeasure.org",
        "code": "wk",
    }
    assert rule(tasks[("gp-visit", 1)], "dueWithin")["value"] == 7
    assert role_of(tasks[("cardiologist-visit", 1)]) == "cardiologist"
    assert tasks[("gp-visit", 1)]["priority"] == "urgent"
    assert tasks[("gp-visit", 1)]["description"] == "Consultation du médecin traitant sous 7 jours"
    # The nurse's worklist finds her tasks of the pathway, earliest first.
    worklist = cpts.get(
        "/Task",
        params={
            "owner": "Practitioner/idel-bernard",
            "status": "requested",
            "pathway": "heart-failure",
            "_sort": "due-date",
        },
    ).json()
    assert [due(e["resource"]) for e in worklist["entry"]][:3] == weekly[:3]


@pytest.mark.parametrize(
    ("observations", "extended"),
    [
        ([], False),
        ([("2026-11-22", CLASS_II, {})], False),
        ([("2026-11-22", CLASS_III, {})], True),
        ([("2026-11-22", CLASS_IV_SNOMED, {})], True),
        # The latest class decides: III on admission, II on the day before discharge.
        ([("2026-11-16", CLASS_III, {}), ("2026-11-22", CLASS_II, {})], False),
        ([("2026-11-22", CLASS_II, {}), ("2026-11-16", CLASS_III, {})], False),
        # Only final results count.
        ([("2026-11-22", CLASS_III, {"status": "preliminary"})], False),
    ],
    ids=["none", "II", "III", "IV", "III-then-II", "II-after-III", "III-preliminary"],
)
def test_nyha_class_decides_the_extended_nurse_follow_up(
    cpts: httpx.Client, observations: list, extended: bool
) -> None:
    for index, (day, answer, extra) in enumerate(observations):
        put(
            cpts,
            nyha(f"nyha-{index}", "Patient/pat-dupont", f"{day}T10:00:00+01:00", answer, **extra),
        )
    careplan = applied(
        apply(cpts, "heart-failure", "Patient/pat-dupont", encounter="Encounter/stay-dupont")
    )
    steps = {step for step, _ in tasks_of(cpts, careplan)}
    assert ("nurse-extended-follow-up" in steps) is extended
    assert len(careplan["activity"]) == (23 if extended else 15)


# -- hospital discharge ----------------------------------------------------------------------------


def _moreau_stay(api: httpx.Client) -> None:
    """M. Moreau leaves hospital on Saturday 28 March 2026 at 15:00, the eve of the spring
    change; his care team: GP, pharmacist, coordinator (no social worker)."""
    put(
        api,
        {
            "resourceType": "Encounter",
            "id": "stay-moreau",
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "IMP",
            },
            "subject": {"reference": "Patient/pat-moreau"},
            "period": {"start": "2026-03-20T09:00:00+01:00", "end": "2026-03-28T15:00:00+01:00"},
            "serviceProvider": {"reference": "Organization/hopital-demo"},
        },
    )
    put(
        api,
        care_team(
            "team-moreau",
            "Patient/pat-moreau",
            member("gp", "Practitioner/gp-martin"),
            member("pharmacist", "Practitioner/pharma-petit"),
            member("coordinator", "Practitioner/coord-durand"),
        ),
    )


def _lives_alone(id_: str, subject: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": id_,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": status,
                }
            ]
        },
        "code": {"coding": [{"system": SNOMED, "code": "105529008", "display": "Lives alone"}]},
        "subject": {"reference": subject},
    }


def test_complex_hospital_discharge_across_the_spring_change(cpts: httpx.Client) -> None:
    _moreau_stay(cpts)
    put(cpts, _lives_alone("alone-moreau", "Patient/pat-moreau", "active"))
    careplan = applied(
        apply(cpts, "hospital-discharge", "Patient/pat-moreau", encounter="Encounter/stay-moreau")
    )
    assert careplan["period"]["start"] == "2026-03-28T15:00:00+01:00"
    assert "author" not in careplan
    tasks = tasks_of(cpts, careplan)
    # The reconciliation's 48 h: test_reconciliation_is_due_48_elapsed_hours_after_the_discharge
    reconciliation = tasks.pop(("medication-reconciliation", 1))
    assert {key[0]: (due(t), owner(t)) for key, t in tasks.items()} == {
        "discharge-letter": (f"2026-03-28{END}", "Organization/hopital-demo"),
        "gp-visit": (f"2026-04-04{SUMMER_END}", "Practitioner/gp-martin"),
        "follow-up-call": (f"2026-04-05{SUMMER_END}", "Practitioner/coord-durand"),
        "complex-discharge-coordination": (f"2026-03-29{SUMMER_END}", "Practitioner/coord-durand"),
        "social-assessment": (f"2026-04-04{SUMMER_END}", None),
    }
    assert owner(reconciliation) == "Practitioner/pharma-petit"
    assert reconciliation["priority"] == "urgent"
    social = tasks[("social-assessment", 1)]
    assert role_of(social) == "social-worker" and social["status"] == "requested"
    assert all(t["status"] == "requested" for t in [reconciliation, *tasks.values()])


def test_reconciliation_is_due_48_elapsed_hours_after_the_discharge(cpts: httpx.Client) -> None:
    _moreau_stay(cpts)
    careplan = applied(
        apply(cpts, "hospital-discharge", "Patient/pat-moreau", encounter="Encounter/stay-moreau")
    )
    reconciliation = tasks_of(cpts, careplan)[("medication-reconciliation", 1)]
    assert due(reconciliation) == "2026-03-30T16:00:00+02:00"


def test_simple_hospital_discharge(cpts: httpx.Client) -> None:
    """Living alone no more (resolved), and an assessment that says no: not complex. Without
    an encounter, the trigger is the discharge time given."""
    put(cpts, _lives_alone("alone-leroy", "Patient/pat-leroy", "resolved"))
    put(
        cpts,
        {
            "resourceType": "Observation",
            "id": "alone-leroy-now",
            "status": "final",
            "code": {"coding": [{"system": SNOMED, "code": "105529008"}]},
            "subject": {"reference": "Patient/pat-leroy"},
            "valueBoolean": False,
        },
    )
    careplan = applied(
        apply(
            cpts,
            "hospital-discharge",
            "Patient/pat-leroy",
            trigger="2026-11-20T11:30:00+01:00",
            practitioner="Practitioner/coord-durand",
        )
    )
    assert careplan["author"] == {"reference": "Practitioner/coord-durand"}
    assert careplan["contributor"] == [{"reference": "Practitioner/coord-durand"}]
    assert "careTeam" not in careplan and "encounter" not in careplan
    assert careplan["identifier"][0]["value"] == (
        "hospital-discharge|pat-leroy|2026-11-20T11:30:00+01:00"
    )
    tasks = tasks_of(cpts, careplan)
    assert {key[0]: due(t) for key, t in tasks.items()} == {
        "discharge-letter": f"2026-11-20{END}",
        "medication-reconciliation": "2026-11-22T11:30:00+01:00",
        "gp-visit": f"2026-11-27{END}",
        "follow-up-call": f"2026-11-28{END}",
    }
    # Nobody of a care team, no stay: every task waits for a professional to claim it.
    assert {key[0]: (owner(t), role_of(t)) for key, t in tasks.items()} == {
        "discharge-letter": (None, "hospital"),
        "medication-reconciliation": (None, "pharmacist"),
        "gp-visit": (None, "gp"),
        "follow-up-call": (None, "coordinator"),
    }
    assert all(t["requester"] == {"reference": "Practitioner/coord-durand"} for t in tasks.values())


# -- osteoporosis ----------------------------------------------------------------------------------


def test_osteoporosis_from_the_end_of_a_month(cpts: httpx.Client) -> None:
    """A fracture on Sunday 31 January 2027 at 10:00: a month later is the last day of
    February; the injection waits for the dental check and the rheumatology opinion."""
    careplan = applied(
        apply(cpts, "osteoporosis", "Patient/pat-leroy", trigger="2027-01-31T10:00:00+01:00")
    )
    tasks = tasks_of(cpts, careplan)
    assert {key[0]: (due(t), t["status"]) for key, t in tasks.items()} == {
        "medication-reconciliation": ("2027-02-02T10:00:00+01:00", "requested"),
        "densitometry": (f"2027-02-28{END}", "requested"),
        "rheumatology-opinion": (f"2027-03-28{SUMMER_END}", "draft"),
        "dental-check": (f"2027-02-28{END}", "requested"),
        "bisphosphonate-injection": (f"2027-04-28{SUMMER_END}", "draft"),
        "gp-follow-up": (f"2027-02-28{END}", "requested"),
        "fall-prevention": (f"2027-04-30{SUMMER_END}", "requested"),
    }
    injection = tasks[("bisphosphonate-injection", 1)]
    assert [r["reference"] for r in rule(injection, "dependsOn")] == [
        f"Task/{tasks[('dental-check', 1)]['id']}",
        f"Task/{tasks[('rheumatology-opinion', 1)]['id']}",
    ]
    assert injection["restriction"]["period"]["start"] == f"2027-03-28{SUMMER_END}"
    assert role_of(injection) == "idel" and owner(injection) is None
    opinion = tasks[("rheumatology-opinion", 1)]
    assert [r["reference"] for r in rule(opinion, "dependsOn")] == [
        f"Task/{tasks[('densitometry', 1)]['id']}"
    ]


# -- neurodevelopment ------------------------------------------------------------------------------


def test_neurodevelopment(cpts: httpx.Client) -> None:
    put(
        cpts,
        {
            "resourceType": "Organization",
            "id": "pco-demo",
            "identifier": [{"system": "https://finess.esante.gouv.fr", "value": "690000003"}],
            "name": "PCO TND de démonstration",
        },
    )
    put(cpts, patient("Petit", "Léo", id="child-petit", birthDate="2021-05-10", gender="male"))
    put(
        cpts,
        care_team(
            "team-petit",
            "Patient/child-petit",
            member("pco", "Organization/pco-demo"),
            member("gp", "Practitioner/gp-martin"),
        ),
    )
    careplan = applied(
        apply(cpts, "neurodevelopment", "Patient/child-petit", trigger="2026-12-15T09:00:00+01:00")
    )
    tasks = tasks_of(cpts, careplan)
    assert {key[0]: (due(t), t["status"], owner(t)) for key, t in tasks.items()} == {
        "pco-validation": (f"2026-12-30{END}", "requested", "Organization/pco-demo"),
        "first-assessment": (f"2027-03-30{SUMMER_END}", "draft", None),
        "pco-report": (f"2027-04-30{SUMMER_END}", "draft", None),
        "synthesis-meeting": (f"2027-09-30{SUMMER_END}", "draft", "Organization/pco-demo"),
        "family-report": (f"2027-10-15{SUMMER_END}", "draft", "Organization/pco-demo"),
        "gp-report": (f"2027-10-15{SUMMER_END}", "draft", "Organization/pco-demo"),
        "pathway-review": (f"2027-12-30{END}", "draft", "Organization/pco-demo"),
        "renewal-review": (f"2028-12-30{END}", "draft", "Organization/pco-demo"),
    }
    assert rule(tasks[("renewal-review", 1)], "required") is False
    assessment = tasks[("first-assessment", 1)]
    funding = {
        "url": f"{CPTS}/StructureDefinition/funding-source",
        "valueCoding": {
            "system": f"{CPTS}/CodeSystem/funding-source",
            "code": "pco-forfait",
            "display": "Forfait d'intervention précoce (PCO)",
        },
    }
    assert funding in assessment["extension"]
    # An assessment is never funded twice.
    twice = copy.deepcopy(assessment)
    twice["extension"].append(
        {
            "url": funding["url"],
            "valueCoding": {"system": f"{CPTS}/CodeSystem/funding-source", "code": "cpts-aid"},
        }
    )
    response = cpts.put(f"/Task/{assessment['id']}", json=twice, headers=JSON)
    assert response.status_code == 422, response.text
    assert cpts.get(f"/Task/{assessment['id']}").json()["meta"]["versionId"] == "1"


# -- idempotency and concurrency -------------------------------------------------------------------


def test_applying_twice_creates_nothing_more(cpts: httpx.Client) -> None:
    first = applied(
        apply(cpts, "heart-failure", "Patient/pat-dupont", encounter="Encounter/stay-dupont")
    )
    tasks = tasks_of(cpts, first)
    again = apply(
        cpts,
        "heart-failure",
        "Patient/pat-dupont",
        encounter="Encounter/stay-dupont",
        trigger="2026-11-23T16:00:00+01:00",  # the same stay: the same trigger
    )
    assert applied(again, 200) == first
    assert "location" not in again.headers
    assert tasks_of(cpts, first) == tasks
    # Without a stay, the trigger time identifies the trigger, whatever its zone.
    by_time = applied(
        apply(cpts, "osteoporosis", "Patient/pat-leroy", trigger="2027-01-31T10:00:00+01:00")
    )
    same = apply(cpts, "osteoporosis", "Patient/pat-leroy", trigger="2027-01-31T09:00:00Z")
    assert applied(same, 200)["id"] == by_time["id"]
    later = applied(apply(cpts, "osteoporosis", "Patient/pat-leroy", trigger="2027-06-30"))
    assert later["id"] != by_time["id"]
    assert later["period"]["start"] == "2027-06-30T00:00:00+02:00"
    assert cpts.get("/CarePlan", params={"_summary": "count"}).json()["total"] == 3
    assert (
        cpts.get("/Task", params={"pathway": "osteoporosis", "_summary": "count"}).json()["total"]
        == 2 * 7
    )


def _at_once(base: str, encounter: str) -> list[httpx.Response]:
    """Mme Dupont's heart failure pathway applied for `encounter` by two clients at once."""
    barrier = threading.Barrier(2)
    results: list[httpx.Response] = []

    def call() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            barrier.wait()
            results.append(
                apply(client, "heart-failure", "Patient/pat-dupont", encounter=encounter)
            )

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_applications_make_one_careplan(cpts: httpx.Client) -> None:
    """Two clients apply the same pathway for the same stay at the same moment, three times
    over: each time one CarePlan is created (201) and the other call answers with it (200)."""
    base = str(cpts.base_url)
    for round_ in range(3):
        stay = {
            "resourceType": "Encounter",
            "id": f"stay-{round_}",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": "Patient/pat-dupont"},
            "period": {"end": f"2026-11-0{round_ + 1}T12:00:00+01:00"},
        }
        put(cpts, stay)
        results = _at_once(base, f"Encounter/{stay['id']}")
        assert sorted(r.status_code for r in results) == [200, 201], [r.text for r in results]
        assert results[0].json()["id"] == results[1].json()["id"]
        found = cpts.get(
            "/CarePlan", params={"encounter": f"Encounter/{stay['id']}", "_summary": "count"}
        ).json()
        assert found["total"] == 1
        assert len(tasks_of(cpts, results[0].json())) == 15


# -- a CPTS changes a deadline ---------------------------------------------------------------------


def test_a_changed_deadline_applies_to_the_next_careplans(cpts: httpx.Client) -> None:
    before = applied(
        apply(cpts, "hospital-discharge", "Patient/pat-leroy", trigger="2026-11-20T11:30:00+01:00")
    )
    plan = cpts.get("/PlanDefinition/hospital-discharge").json()
    gp_visit = next(a for a in plan["action"] if a["id"] == "gp-visit")
    gp_visit["timingDuration"]["value"] = 10  # the CPTS's own rule: 10 days
    response = cpts.put("/PlanDefinition/hospital-discharge", json=plan, headers=JSON)
    assert response.status_code == 200, response.text

    after = applied(
        apply(cpts, "hospital-discharge", "Patient/pat-moreau", trigger="2026-11-20T11:30:00+01:00")
    )
    assert due(tasks_of(cpts, after)[("gp-visit", 1)]) == f"2026-11-30{END}"
    assert rule(tasks_of(cpts, after)[("gp-visit", 1)], "dueWithin")["value"] == 10
    # The CarePlan applied before keeps the rule it was applied with.
    assert due(tasks_of(cpts, before)[("gp-visit", 1)]) == f"2026-11-27{END}"


def test_an_added_step_after_one_left_out_waits_for_what_came_before(cpts: httpx.Client) -> None:
    """A CPTS adds cardiac rehabilitation one week after the two-weekly visits: for NYHA II
    those are left out, so it waits for the weekly ones instead."""
    plan = cpts.get("/PlanDefinition/heart-failure").json()
    plan["action"].append(
        {
            "id": "cardiac-rehabilitation",
            "title": "Réadaptation cardiaque",
            "code": [
                {
                    "coding": [
                        {
                            "system": f"{CPTS}/CodeSystem/pathway-step",
                            "code": "heart-failure.cardiac-rehabilitation",
                        }
                    ]
                }
            ],
            "relatedAction": [
                {
                    "actionId": "nurse-extended-follow-up",
                    "relationship": "after-end",
                    "offsetDuration": {
                        "value": 1,
                        "system": "http://unitsofmeasure.org",
                        "code": "wk",
                    },
                }
            ],
            "timingDuration": {"value": 1, "system": "http://unitsofmeasure.org", "code": "mo"},
            "participant": [
                {
                    "type": "practitioner",
                    "role": {"coding": [{"system": ROLE, "code": "cardiologist"}]},
                }
            ],
            "definitionCanonical": f"{CPTS}/ActivityDefinition/cardiac-rehabilitation",
        }
    )
    assert cpts.put("/PlanDefinition/heart-failure", json=plan, headers=JSON).status_code == 200
    careplan = applied(
        apply(cpts, "heart-failure", "Patient/pat-dupont", encounter="Encounter/stay-dupont")
    )
    tasks = tasks_of(cpts, careplan)
    rehabilitation = tasks[("cardiac-rehabilitation", 1)]
    # The last weekly visit is due on 18 January 2027; a week later, then a month.
    assert rehabilitation["status"] == "draft"
    assert rehabilitation["restriction"]["period"] == {
        "start": f"2027-01-25{END}",
        "end": f"2027-02-25{END}",
    }
    assert [r["reference"] for r in rule(rehabilitation, "dependsOn")] == [
        f"Task/{tasks[('nurse-follow-up', k)]['id']}" for k in range(1, 9)
    ]
    assert rule(rehabilitation, "offset")["value"] == 1


# -- errors ----------------------------------------------------------------------------------------


def _count(api: httpx.Client, type_: str) -> int:
    return api.get(f"/{type_}", params={"_summary": "count"}).json()["total"]


@pytest.mark.parametrize(
    ("pathway", "parameters", "status", "said"),
    [
        ("diabetes", {"subject": "Patient/pat-dupont"}, 404, "PlanDefinition/diabetes"),
        ("heart-failure", {}, 400, "needs a subject"),
        ("heart-failure", {"subject": "Practitioner/gp-martin"}, 400, "Patient/[id]"),
        ("heart-failure", {"subject": "pat-dupont"}, 400, "Patient/[id]"),
        ("heart-failure", {"subject": "Patient/nobody"}, 422, "Patient/nobody is not known"),
        (
            "heart-failure",
            {"subject": "Patient/pat-leroy", "encounter": "Encounter/stay-dupont"},
            422,
            "not a stay of the subject",
        ),
        (
            "heart-failure",
            {"subject": "Patient/pat-dupont", "organization": "Organization/nowhere"},
            422,
            "Organization/nowhere",
        ),
        ("heart-failure", {"subject": "Patient/pat-dupont", "trigger": "2026-11"}, 400, "trigger"),
        ("heart-failure", {"subject": "Patient/pat-dupont", "trigger": "soon"}, 400, "trigger"),
        ("heart-failure", {"subject": "Patient/pat-dupont", "mode": "x"}, 400, "'mode'"),
    ],
    ids=[
        "unknown-plan",
        "no-subject",
        "subject-not-a-patient",
        "subject-not-a-reference",
        "unknown-patient",
        "stay-of-another-patient",
        "unknown-organization",
        "trigger-without-day",
        "trigger-not-a-date",
        "unknown-parameter",
    ],
)
def test_errors_store_nothing(
    cpts: httpx.Client, pathway: str, parameters: dict[str, str], status: int, said: str
) -> None:
    tasks = _count(cpts, "Task")
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": name, "valueDateTime" if name == "trigger" else "valueString": value}
            for name, value in parameters.items()
        ],
    }
    response = cpts.post(f"/PlanDefinition/{pathway}/$apply", json=body, headers=JSON)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(said in issue["diagnostics"] for issue in outcome["issue"]), outcome
    assert _count(cpts, "CarePlan") == 0 and _count(cpts, "Task") == tasks


def test_refused_invocations_store_nothing(cpts: httpx.Client) -> None:
    tasks = _count(cpts, "Task")
    by_get = cpts.get(
        "/PlanDefinition/heart-failure/$apply", params={"subject": "Patient/pat-dupont"}
    )
    assert by_get.status_code == 405 and "POST" in by_get.text
    two_subjects = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueString": "Patient/pat-dupont"},
            {"name": "subject", "valueString": "Patient/pat-leroy"},
        ],
    }
    response = cpts.post("/PlanDefinition/heart-failure/$apply", json=two_subjects, headers=JSON)
    assert response.status_code == 400
    not_parameters = patient()
    response = cpts.post("/PlanDefinition/heart-failure/$apply", json=not_parameters, headers=JSON)
    assert response.status_code == 400
    one_subject = {"resourceType": "Parameters", "parameter": two_subjects["parameter"][:1]}
    on_the_type = cpts.post("/PlanDefinition/$apply", json=one_subject, headers=JSON)
    assert on_the_type.status_code == 405
    retired = cpts.get("/PlanDefinition/osteoporosis").json() | {"status": "retired"}
    assert cpts.put("/PlanDefinition/osteoporosis", json=retired, headers=JSON).status_code == 200
    response = apply(cpts, "osteoporosis", "Patient/pat-leroy")
    assert response.status_code == 422 and "retired" in response.text
    assert _count(cpts, "CarePlan") == 0 and _count(cpts, "Task") == tasks


def test_the_trigger_defaults_to_now_without_a_stay(cpts: httpx.Client) -> None:
    before = datetime.now().astimezone()
    careplan = applied(apply(cpts, "osteoporosis", "Patient/pat-leroy"))
    start = datetime.fromisoformat(careplan["period"]["start"])
    assert before - timedelta(seconds=1) <= start <= datetime.now().astimezone()
