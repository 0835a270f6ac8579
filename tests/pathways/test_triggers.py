"""Triggers over HTTP, on SQLite and PostgreSQL: a discharge starts the pathways its diagnoses
call for, once; an opposition Consent starts nothing; an admission tells the care team and
holds the patient's pathways, the discharge resumes them with deadlines re-planned; a discharge
before a weekend or a public holiday alerts the coordinator. Outbox events are handled when the
test says (`dispatch`), as a worker would after the commit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest

from fhir_server.engine.interaction import Context
from fhir_server.outbox import OutboxEvent
from fhir_server.server import Server
from pathways.timing import PARIS
from pathways.triggers import CONSUMER, load_rules
from tests.pathways.builders import (
    PATIENT,
    C,
    careplan,
    created,
    duration,
    put,
    read,
    task,
    walk,
)
from tests.rest.resources import patient

Dispatch = Callable[[], int]
IMP = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}
ICD10 = "http://hl7.org/fhir/sid/icd-10"
CIM10 = "https://smt.esante.gouv.fr/terminologie-cim-10/"
ROLE = f"{C}/CodeSystem/care-role"
TEAM = {
    "gp": "Practitioner/gp-1",
    "pharmacist": "Practitioner/pharmacist-1",
    "idel": "Practitioner/idel-1",
    "coordinator": "Practitioner/coordinator-1",
}
COORDINATION = f"{C}/CodeSystem/coordination-task"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


def care_team(patient_ref: str = PATIENT, **members: str) -> dict[str, Any]:
    id_ = f"team-{patient_ref.partition('/')[2]}"
    return {
        "resourceType": "CareTeam",
        "id": id_,
        "status": "active",
        "subject": {"reference": patient_ref},
        "participant": [
            *(
                {
                    "role": [{"coding": [{"system": ROLE, "code": role}]}],
                    "member": {"reference": member},
                }
                for role, member in (members or TEAM).items()
            ),
            {"member": {"reference": patient_ref}},  # the patient is no one to notify
        ],
    }


def stay(
    id_: str,
    status: str,
    start: str,
    end: str | None = None,
    patient_ref: str = PATIENT,
    **extra: Any,
) -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return {
        "resourceType": "Encounter",
        "id": id_,
        "status": status,
        "class": IMP,
        "subject": {"reference": patient_ref},
        "period": period,
        "serviceProvider": {"reference": "Organization/chu-1"},
        **extra,
    }


def diagnosis(id_: str, encounter: str, system: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": id_,
        "subject": {"reference": PATIENT},
        "encounter": {"reference": f"Encounter/{encounter}"},
        "code": {"coding": [{"system": system, "code": code}]},
    }


def opposition(id_: str = "opposition", **provision: Any) -> dict[str, Any]:
    """The patient's opposition to exchange, as docs/pathways.md defines it."""
    act = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    return {
        "resourceType": "Consent",
        "id": id_,
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": act, "code": "IDSCL"}]}],
        "patient": {"reference": PATIENT},
        "dateTime": "2026-10-01T10:00:00+02:00",
        "policyRule": {"coding": [{"system": act, "code": "OPTOUT"}]},
        "provision": {"type": "deny", **provision},
    }


def bundle(api: httpx.Client, type_: str, **params: str) -> list[dict[str, Any]]:
    response = api.get(f"/{type_}", params={"_count": "500", **params})
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in response.json().get("entry", [])]


def pathways(api: httpx.Client, patient_ref: str = PATIENT) -> Counter[str]:
    """How many CarePlans of each pathway the patient has."""
    return Counter(
        coding["code"]
        for plan in bundle(api, "CarePlan", patient=patient_ref)
        for coding in plan["category"][0]["coding"]
        if coding["system"] == f"{C}/CodeSystem/pathway"
    )


def alerts(api: httpx.Client, encounter: str) -> list[dict[str, Any]]:
    return bundle(
        api, "Task", code=f"{COORDINATION}|discharge-alert", encounter=f"Encounter/{encounter}"
    )


def handle_again(server: Server, type_: str, id_: str, version: int) -> None:
    """Handle an event a second time, as after a crash between the effects and the mark."""
    consumer = next(c for c in server.consumers if c.name == CONSUMER)
    event = OutboxEvent(0, CONSUMER, "update", type_, id_, version, 0)
    context = Context(source=f"outbox:{CONSUMER}")
    server.engine.in_transaction(True, context, lambda uow: consumer.handle(event, uow, context))


def test_a_heart_failure_discharge_starts_its_pathway_and_the_discharge_pathway_once(
    api: httpx.Client, server: Server, dispatch: Dispatch
) -> None:
    created(
        api,
        patient(id="pat-1"),
        care_team(),
        stay("enc-1", "in-progress", "2026-11-16T08:00:00+01:00"),
        diagnosis("hf", "enc-1", ICD10, "I50.9"),
    )
    dispatch()
    assert pathways(api) == {}  # an admission starts no pathway
    discharged = stay(
        "enc-1",
        "finished",
        "2026-11-16T08:00:00+01:00",
        "2026-11-24T15:00:00+01:00",
        diagnosis=[{"condition": {"reference": "Condition/hf"}, "rank": 1}],
    )
    response = put(api, discharged)
    assert response.status_code == 200, response.text
    version = int(response.json()["meta"]["versionId"])
    dispatch()
    assert pathways(api) == {"heart-failure": 1, "hospital-discharge": 1}
    plan = bundle(api, "CarePlan", patient=PATIENT, pathway=f"{C}/CodeSystem/pathway|heart-failure")
    assert plan[0]["encounter"] == {"reference": "Encounter/enc-1"}
    assert plan[0]["period"]["start"] == "2026-11-24T15:00:00+01:00"

    # The event handled again, then the stay updated after the discharge: nothing more.
    handle_again(server, "Encounter", "enc-1", version)
    assert put(api, {**discharged, "length": duration(8, "d")}).status_code == 200
    dispatch()
    assert pathways(api) == {"heart-failure": 1, "hospital-discharge": 1}
    assert alerts(api, "enc-1") == []  # a Tuesday afternoon: professionals are there


def test_a_fragility_fracture_starts_osteoporosis_from_50_years_of_age(
    api: httpx.Client, dispatch: Dispatch
) -> None:
    young = "Patient/pat-2"
    fracture = {"reasonCode": [{"coding": [{"system": CIM10, "code": "S720"}]}]}
    created(
        api,
        patient(id="pat-1", birthDate="1948-03-12"),
        patient(id="pat-2", family="Martin", birthDate="2001-06-02"),
        stay(
            "enc-1",
            "finished",
            "2026-11-20T08:00:00+01:00",
            "2026-11-24T11:00:00+01:00",
            **fracture,
        ),
        stay(
            "enc-2",
            "finished",
            "2026-11-20T08:00:00+01:00",
            "2026-11-24T11:00:00+01:00",
            patient_ref=young,
            **fracture,
        ),
    )
    dispatch()
    assert pathways(api) == {"osteoporosis": 1, "hospital-discharge": 1}
    assert pathways(api, young) == {"hospital-discharge": 1}


def test_a_patient_who_died_starts_no_pathway(api: httpx.Client, dispatch: Dispatch) -> None:
    died = {
        "hospitalization": {
            "dischargeDisposition": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/discharge-disposition",
                        "code": "exp",
                    }
                ]
            }
        },
        "reasonCode": [{"coding": [{"system": ICD10, "code": "I50.1"}]}],
    }
    created(
        api,
        patient(id="pat-1"),
        stay("enc-1", "finished", "2026-11-20T08:00:00+01:00", "2026-11-27T16:00:00+01:00", **died),
    )
    dispatch()
    assert pathways(api) == {}
    assert alerts(api, "enc-1") == []


def test_an_opposition_consent_starts_nothing_and_notifies_no_one(
    api: httpx.Client, dispatch: Dispatch
) -> None:
    created(
        api,
        patient(id="pat-1"),
        care_team(),
        opposition(),
        # A refusal aimed at one professional is not an opposition to the pathway.
        opposition(
            "not-the-dentist",
            actor=[
                {
                    "role": {
                        "coding": [
                            {
                                "system": PARTICIPATION,
                                "code": "PRCP",
                            }
                        ]
                    },
                    "reference": {"reference": "Practitioner/dentist-1"},
                }
            ],
        ),
        stay("enc-1", "in-progress", "2026-11-16T08:00:00+01:00"),
    )
    dispatch()
    assert bundle(api, "Communication") == []
    discharged = stay(
        "enc-1",
        "finished",
        "2026-11-16T08:00:00+01:00",
        "2026-11-27T16:00:00+01:00",
        reasonCode=[{"coding": [{"system": ICD10, "code": "I50.9"}]}],
    )
    assert put(api, discharged).status_code == 200
    dispatch()
    assert pathways(api) == {}
    assert alerts(api, "enc-1") == []  # a Friday afternoon, but the patient opposes

    # The opposition withdrawn, the next stay starts the pathways.
    assert put(api, {**opposition(), "status": "inactive"}).status_code == 200
    created(
        api,
        stay(
            "enc-2",
            "finished",
            "2026-12-01T08:00:00+01:00",
            "2026-12-08T10:00:00+01:00",
            reasonCode=[{"coding": [{"system": ICD10, "code": "I50.9"}]}],
        ),
    )
    dispatch()
    assert pathways(api) == {"heart-failure": 1, "hospital-discharge": 1}


def test_an_admission_notifies_the_care_team_and_holds_the_pathways_until_discharge(
    api: httpx.Client, server: Server, dispatch: Dispatch
) -> None:
    created(
        api,
        patient(id="pat-1"),
        care_team(),
        {
            **careplan("cp-1", task_ids=["a", "b", "c", "d", "e"]),
            "careTeam": [{"reference": "CareTeam/team-pat-1"}],
        },
        task("a", "cp-1", step="gp-visit"),
        task("b", "cp-1", step="medication-review", due_within=duration(48, "h")),
        task("c", "cp-1", step="nurse-follow-up"),
        task("d", "cp-1", step="cardiologist-visit", status="draft", depends_on=["a"]),
        task("e", "cp-1", step="inclusion"),
    )
    walk(api, "b", "accepted")
    walk(api, "c", "accepted", "in-progress")
    walk(api, "e", "accepted", "in-progress", "completed")
    dispatch()

    admission = stay("enc-2", "in-progress", "2026-12-03T09:30:00+01:00")
    created(api, admission)
    dispatch()
    notices = bundle(api, "Communication", encounter="Encounter/enc-2")
    assert sorted(n["recipient"][0]["reference"] for n in notices) == sorted(TEAM.values())
    for notice in notices:
        assert notice["subject"] == {"reference": PATIENT}
        assert notice["about"] == [{"reference": "Encounter/enc-2"}]
        assert notice["status"] == "completed" and notice["sent"]
        assert notice["payload"][0]["contentString"] == (
            "Hospitalisation : admission le 03/12/2026 à 09:30."
        )
    statuses = {id_: read(api, "Task", id_)["status"] for id_ in "abcde"}
    assert statuses == {
        "a": "on-hold",
        "b": "on-hold",
        "c": "on-hold",
        "d": "draft",
        "e": "completed",
    }
    assert read(api, "Task", "a")["businessStatus"]["coding"][0]["code"] == "rehospitalised"
    plan = read(api, "CarePlan", "cp-1")
    assert plan["status"] == "on-hold"
    flag = read(api, "Flag", plan["supportingInfo"][0]["reference"].partition("/")[2])
    assert (flag["status"], flag["encounter"]) == ("active", {"reference": "Encounter/enc-2"})

    # The admission handled again: no second notice, nothing held twice.
    handle_again(server, "Encounter", "enc-2", 1)
    assert len(bundle(api, "Communication", encounter="Encounter/enc-2")) == len(TEAM)
    assert read(api, "CarePlan", "cp-1")["supportingInfo"] == plan["supportingInfo"]

    # Discharge on Wednesday 9 December 11:00: back to work, due again from the discharge.
    discharge = {**admission, "status": "finished"}
    discharge["period"] = {**admission["period"], "end": "2026-12-09T11:00:00+01:00"}
    assert put(api, discharge).status_code == 200
    dispatch()
    resumed = {id_: read(api, "Task", id_) for id_ in "abcd"}
    assert {id_: t["status"] for id_, t in resumed.items()} == {
        "a": "requested",
        "b": "accepted",
        "c": "in-progress",
        "d": "draft",
    }
    assert "businessStatus" not in resumed["a"]
    # 7 days: the end of Wednesday 16 December; 48 h: Friday 11 December 11:00
    assert resumed["a"]["restriction"]["period"] == {
        "start": "2026-12-09T11:00:00+01:00",
        "end": "2026-12-16T23:59:59+01:00",
    }
    assert resumed["b"]["restriction"]["period"]["end"] == "2026-12-11T11:00:00+01:00"
    plan = read(api, "CarePlan", "cp-1")
    assert plan["status"] == "active" and "supportingInfo" not in plan
    flag = read(api, "Flag", flag["id"])
    assert flag["status"] == "inactive"
    assert flag["period"]["end"] == "2026-12-09T11:00:00+01:00"


def held_plan(api: httpx.Client) -> None:
    created(
        api,
        patient(id="pat-1"),
        care_team(),
        careplan("cp-1", task_ids=["a"]),
        task("a", "cp-1", step="gp-visit"),
    )


def test_a_cancelled_admission_resumes_what_it_held(api: httpx.Client, dispatch: Dispatch) -> None:
    held_plan(api)
    admission = stay("enc-2", "in-progress", "2026-12-03T09:30:00+01:00")
    created(api, admission)
    dispatch()
    assert read(api, "Task", "a")["status"] == "on-hold"
    assert put(api, {**admission, "status": "cancelled"}).status_code == 200  # HL7 v2 A11
    dispatch()
    resumed = read(api, "Task", "a")
    assert resumed["status"] == "requested" and "businessStatus" not in resumed
    assert read(api, "CarePlan", "cp-1")["status"] == "active"
    (flag,) = bundle(api, "Flag", encounter="Encounter/enc-2")
    assert flag["status"] == "inactive"


def test_a_cancelled_discharge_holds_the_pathways_again_until_the_next_one(
    api: httpx.Client, dispatch: Dispatch
) -> None:
    held_plan(api)
    admission = stay("enc-2", "in-progress", "2026-12-03T09:30:00+01:00")
    created(api, admission)
    dispatch()
    discharge = {**admission, "status": "finished"}
    discharge["period"] = {**admission["period"], "end": "2026-12-08T10:00:00+01:00"}
    assert put(api, discharge).status_code == 200
    dispatch()
    assert read(api, "Task", "a")["status"] == "requested"
    assert put(api, admission).status_code == 200  # HL7 v2 A13: the stay goes on
    dispatch()
    assert read(api, "Task", "a")["status"] == "on-hold"
    (flag,) = bundle(api, "Flag", encounter="Encounter/enc-2")
    assert flag["status"] == "active" and "end" not in flag["period"]
    assert len(bundle(api, "Communication", encounter="Encounter/enc-2")) == len(TEAM)
    discharge["period"]["end"] = "2026-12-10T10:00:00+01:00"
    assert put(api, discharge).status_code == 200
    dispatch()
    resumed = read(api, "Task", "a")
    assert resumed["status"] == "requested"
    assert resumed["restriction"]["period"]["end"] == "2026-12-17T23:59:59+01:00"
    assert pathways(api) == {"heart-failure": 1, "hospital-discharge": 1}


@pytest.mark.parametrize(
    ("end", "alerted"),
    [
        ("2026-11-27T16:00:00+01:00", True),  # Friday afternoon
        ("2026-11-27T11:30:00+01:00", False),  # Friday morning
        ("2026-11-29T10:00:00+01:00", True),  # Sunday
        ("2026-07-13T15:00:00+02:00", True),  # Monday, eve of 14 July
        ("2026-04-30T17:30:00+02:00", True),  # Thursday, eve of 1 May
        ("2026-11-24T16:00:00+01:00", False),  # Tuesday
    ],
)
def test_a_discharge_before_a_weekend_or_a_holiday_alerts_the_coordinator(
    api: httpx.Client, dispatch: Dispatch, end: str, alerted: bool
) -> None:
    created(
        api,
        patient(id="pat-1"),
        care_team(),
        stay("enc-1", "finished", "2026-04-01T08:00:00+02:00", end),
    )
    dispatch()
    found = alerts(api, "enc-1")
    assert len(found) == (1 if alerted else 0)
    if alerted:
        alert = found[0]
        assert alert["owner"] == {"reference": TEAM["coordinator"]}
        assert alert["for"] == {"reference": PATIENT}
        assert alert["status"] == "requested"
        assert alert["basedOn"][0]["reference"].startswith("CarePlan/")
        local = datetime.fromisoformat(end).astimezone(PARIS)
        assert local.strftime("%d/%m/%Y à %H:%M") in alert["description"]


def test_without_a_coordinator_the_alert_is_left_for_any_coordinator_to_claim(
    api: httpx.Client, dispatch: Dispatch
) -> None:
    created(
        api,
        patient(id="pat-1"),
        care_team(gp=TEAM["gp"]),
        stay("enc-1", "finished", "2026-11-20T08:00:00+01:00", "2026-11-27T16:00:00+01:00"),
    )
    dispatch()
    (alert,) = alerts(api, "enc-1")
    assert "owner" not in alert
    assert alert["performerType"] == [{"coding": [{"system": ROLE, "code": "coordinator"}]}]


def test_a_referral_to_the_pco_starts_the_neurodevelopment_pathway(
    api: httpx.Client, dispatch: Dispatch
) -> None:
    referral = {
        "resourceType": "ServiceRequest",
        "id": "referral-1",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]},
        "performerType": {"coding": [{"system": ROLE, "code": "pco"}]},
        "subject": {"reference": PATIENT},
        "requester": {"reference": "Practitioner/gp-1"},
        "authoredOn": "2026-11-24T17:00:00+01:00",
    }
    created(api, patient(id="pat-1", birthDate="2021-09-01"), care_team(), referral)
    dispatch()
    assert pathways(api) == {}  # a draft is no referral yet
    assert put(api, {**referral, "status": "active"}).status_code == 200
    dispatch()
    assert pathways(api) == {"neurodevelopment": 1}


def test_the_shipped_rules_load_and_count_local_days_off() -> None:
    rules = load_rules()
    assert set(rules.by_type) == {"Encounter", "ServiceRequest"}
    off = rules.off_hours
    assert datetime(2026, 11, 27, 12, 0, tzinfo=PARIS) in off  # Friday noon
    assert datetime(2026, 11, 27, 11, 59, tzinfo=PARIS) not in off
    assert datetime(2026, 12, 25, 10, 0, tzinfo=PARIS) in off  # Christmas, a Friday
    assert datetime(2026, 5, 13, 14, 0, tzinfo=PARIS) in off  # eve of Ascension
    assert datetime(2026, 5, 13, 10, 0, tzinfo=PARIS) not in off
    assert datetime(2026, 11, 30, 8, 0, tzinfo=PARIS) not in off  # Monday
