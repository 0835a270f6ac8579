"""Each of the four pathways from end to end over HTTP, on SQLite and PostgreSQL, as the people
of a CPTS live it: the CPTS's software records the organisations, the professionals (RPPS), the
patient (validated INS) and the care team with its roles; the hospital sends the finished stay
with its diagnosis (the GP sends the referral to the PCO for TND); the outbox runs (triggers,
then progression, as a worker would after each commit); each professional reads their worklist
with the query of the README, claims an unassigned task with If-Match, and moves their tasks
through accepted, in-progress and completed, some after the deadline; the deadline sweep runs at
chosen instants and escalates the late tasks to the coordinator; the indicators of the year are
asked for the CPTS. Every due date and every number is worked out by hand in the comments, in
Europe/Paris time: +01:00 in winter, +02:00 from Sunday 30 March to Sunday 26 October 2025.

Dates are in 2025, before the time the tests run: every due date of the reported periods is
past, so the indicators do not depend on the day the tests are run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import httpx

from fhir_server.server import Server
from pathways.deadlines import SweepCounts, sweep
from pathways.progression import step
from pathways.timing import PARIS
from tests.pathways.builders import (
    FUNDING,
    ORGANIZATION,
    PATIENT,
    C,
    complete,
    created,
    ins_patient,
    move,
    organization,
    patch,
    practitioner,
    read,
    walk,
)
from tests.pathways.test_apply import CLASS_III, nyha
from tests.pathways.test_deadlines import escalations
from tests.pathways.test_measures import delays, evaluate, on_time, readmissions, results
from tests.pathways.test_triggers import (
    COORDINATION,
    ICD10,
    ROLE,
    TEAM,
    alerts,
    bundle,
    care_team,
    diagnosis,
    pathways,
    stay,
)

Dispatch = Callable[[], int]
HOSPITAL = "Organization/chu-1"
SNOMED = "http://snomed.info/sct"
OVERDUE = f"{C}/CodeSystem/task-business-status|overdue"
# The worklist of the README: a professional's open tasks, earliest deadline first, with the
# patients.
OPEN = "requested,accepted,in-progress"
# Every professional of the tests, with an RPPS number of 11 digits.
PROFESSIONALS = {
    "gp-1": ("10000000011", "Martin", "Claire"),
    "pharmacist-1": ("10000000029", "Petit", "Louis"),
    "idel-1": ("10000000037", "Bernard", "Sophie"),
    "coordinator-1": ("10000000045", "Durand", "Anne"),
    "cardiologist-1": ("10000000052", "Robert", "Marc"),
    "cardiologist-2": ("10000000060", "Richard", "Paul"),
    "radiologist-1": ("10000000078", "Moreau", "Julie"),
    "rheumatologist-1": ("10000000086", "Simon", "Luc"),
    "dentist-1": ("10000000094", "Laurent", "Emma"),
    "social-worker-1": ("10000000102", "Michel", "Chloé"),
    "pco-1": ("10000000110", "Garcia", "Inès"),
    "assessor-1": ("10000000128", "David", "Hugo"),
}


def enrol(api: httpx.Client, patient: dict[str, Any], team: dict[str, str]) -> None:
    """What the CPTS's software records before anything happens: the CPTS, the hospital, every
    professional, the patient, and the patient's care team (roles coded in care-role), which
    the CPTS manages."""
    created(
        api,
        organization("cpts-1", "CPTS Lyon Rive Gauche"),
        organization("chu-1", "Hôpital de la Croix-Rousse", finess="690781810"),
        *(practitioner(id_, *identity) for id_, identity in PROFESSIONALS.items()),
        patient,
        {**care_team(**team), "managingOrganization": [{"reference": ORGANIZATION}]},
    )


def careplan_of(api: httpx.Client, pathway: str) -> dict[str, Any]:
    (careplan,) = bundle(
        api, "CarePlan", patient=PATIENT, pathway=f"{C}/CodeSystem/pathway|{pathway}"
    )
    return careplan


def steps_of(api: httpx.Client, careplan: dict[str, Any]) -> dict[tuple[str, int], str]:
    """The ids of a CarePlan's step Tasks by (step, occurrence), every one it lists."""
    tasks = bundle(api, "Task", **{"based-on": f"CarePlan/{careplan['id']}"})
    found = {
        (task["code"]["coding"][0]["code"].partition(".")[2], occurrence): task["id"]
        for task in tasks
        if (occurrence := step(task).get("occurrence", [None])[0]) is not None
    }
    assert {f"Task/{id_}" for id_ in found.values()} == {
        activity["reference"]["reference"] for activity in careplan["activity"]
    }
    return found


def line(task: dict[str, Any]) -> tuple[str, int | None, str | None]:
    """A worklist line: the task's code, occurrence (none for a coordinator task) and due date."""
    occurrence = step(task).get("occurrence", [None])[0]
    due = task.get("restriction", {}).get("period", {}).get("end")
    return task["code"]["coding"][0]["code"], occurrence, due


def worklist(
    api: httpx.Client, owner: str, expected: Sequence[tuple[str, int | None, str | None]]
) -> list[dict[str, Any]]:
    """Read a professional's worklist with the README's query and check it: the `expected`
    lines, in the order of their due dates (tasks due at the same time in any order), and the
    patient of every task included."""
    response = api.get(
        "/Task",
        params={
            "owner": owner,
            "status": OPEN,
            "_sort": "due-date",
            "_include": "Task:patient",
        },
    )
    assert response.status_code == 200, response.text
    entries = response.json().get("entry", [])
    tasks = [e["resource"] for e in entries if e["search"]["mode"] == "match"]
    included = {
        f"Patient/{e['resource']['id']}" for e in entries if e["search"]["mode"] == "include"
    }
    found = [line(task) for task in tasks]
    assert [due for *_, due in found] == [due for *_, due in expected], found
    assert sorted(found, key=repr) == sorted(expected, key=repr)
    assert included == {task["for"]["reference"] for task in tasks}
    return tasks


def unassigned(api: httpx.Client, role: str) -> list[dict[str, Any]]:
    """The open tasks nobody holds that a professional of `role` may claim."""
    return bundle(
        api,
        "Task",
        performer=f"{ROLE}|{role}",
        **{"owner:missing": "true"},
        status="requested",
        _sort="due-date",
    )


def claim(api: httpx.Client, task_id: str, owner: str, version: str) -> httpx.Response:
    """Take an unassigned task: a JSON Patch of its owner, If-Match the version read."""
    return patch(
        api,
        "Task",
        task_id,
        [{"op": "add", "path": "/owner", "value": {"reference": owner}}],
        **{"if-match": f'W/"{version}"'},
    )


def overdue(api: httpx.Client) -> set[str]:
    """The ids of the tasks the sweep has marked overdue."""
    return {task["id"] for task in bundle(api, "Task", **{"business-status": OVERDUE})}


def check_escalations(api: httpx.Client, late: set[str], owner: str | None) -> None:
    """One escalation per late task, for the coordinator `owner` (None: any coordinator of the
    CPTS may claim it), on the late task's CarePlan and patient."""
    found = escalations(api)
    assert set(found) == late
    for id_, escalation in found.items():
        late_task = read(api, "Task", id_)
        assert escalation["status"] == "requested"
        assert escalation.get("owner", {}).get("reference") == owner
        assert escalation["basedOn"] == late_task["basedOn"]
        assert escalation["for"] == {"reference": PATIENT}


def test_heart_failure(api: httpx.Client, server: Server, dispatch: Dispatch) -> None:
    """Mme Dupont (NYHA III) leaves hospital on Friday 7 March 2025 at 16:30, after a stay for
    heart failure: the heart-failure and hospital-discharge pathways start, and the coordinator
    is alerted (a Friday afternoon). Her care team: GP, pharmacist, nurse, coordinator; no
    cardiologist, so the cardiology visit is left for one to claim."""
    enrol(api, ins_patient("pat-1", "Dupont", "Hélène", "1948-03-12", "248036912312345"), TEAM)
    discharge = "2025-03-07T16:30:00+01:00"
    created(
        api,
        nyha("nyha-1", PATIENT, "2025-03-06T10:00:00+01:00", CLASS_III),
        diagnosis("hf-1", "enc-1", ICD10, "I50.1"),
        stay(
            "enc-1",
            "finished",
            "2025-02-28T14:00:00+01:00",
            discharge,
            diagnosis=[{"condition": {"reference": "Condition/hf-1"}, "rank": 1}],
        ),
    )
    dispatch()

    assert pathways(api) == {"heart-failure": 1, "hospital-discharge": 1}
    hf, hd = careplan_of(api, "heart-failure"), careplan_of(api, "hospital-discharge")
    assert hf["period"] == {"start": discharge}
    assert hf["encounter"] == {"reference": "Encounter/enc-1"}
    hf_tasks, hd_tasks = steps_of(api, hf), steps_of(api, hd)
    assert len(hf_tasks) == 23  # NYHA III: the two-weekly visits too
    (alert,) = alerts(api, "enc-1")
    assert alert["owner"] == {"reference": TEAM["coordinator"]}
    assert "07/03/2025 à 16:30" in alert["description"]

    # Calendar deadlines end with the local day of the discharge plus the delay; 48 h is
    # elapsed time. Weekly visits: k weeks after Friday 7 March; the two-weekly ones wait (draft)
    # for the eight weekly visits and are not in the worklist yet.
    weekly = ["03-14", "03-21", "03-28", "04-04", "04-11", "04-18", "04-25", "05-02"]
    weekly_due = [f"2025-{day}T23:59:59{'+01:00' if day < '03-30' else '+02:00'}" for day in weekly]
    worklist(
        api,
        TEAM["idel"],
        [("heart-failure.nurse-follow-up", k, due) for k, due in enumerate(weekly_due, 1)],
    )
    worklist(
        api,
        TEAM["gp"],
        [
            ("heart-failure.gp-visit", 1, "2025-03-14T23:59:59+01:00"),  # 7 d
            ("hospital-discharge.gp-visit", 1, "2025-03-14T23:59:59+01:00"),  # 7 d
            ("heart-failure.yearly-review", 1, "2026-03-07T23:59:59+01:00"),  # 1 a
        ],
    )
    worklist(
        api,
        TEAM["pharmacist"],
        [
            # 16:30 + 48 h: Sunday 9 March 16:30
            ("hospital-discharge.medication-reconciliation", 1, "2025-03-09T16:30:00+01:00"),
            ("heart-failure.medication-review", 1, "2025-04-07T23:59:59+02:00"),  # 1 mo
        ],
    )
    worklist(
        api,
        TEAM["coordinator"],
        [
            ("heart-failure.inclusion", 1, "2025-03-07T23:59:59+01:00"),  # 0 d
            ("hospital-discharge.follow-up-call", 1, "2025-03-15T23:59:59+01:00"),  # D+8
            ("heart-failure.therapeutic-education", 1, "2025-05-07T23:59:59+02:00"),  # 2 mo
            ("discharge-alert", None, None),  # no deadline: sorted last
        ],
    )
    worklist(
        api, HOSPITAL, [("hospital-discharge.discharge-letter", 1, "2025-03-07T23:59:59+01:00")]
    )

    # A cardiologist claims the visit (2 mo: Wednesday 7 May); a colleague who read the same
    # version is too late.
    (visit,) = unassigned(api, "cardiologist")
    assert visit["id"] == hf_tasks[("cardiologist-visit", 1)]
    version = visit["meta"]["versionId"]
    assert claim(api, visit["id"], "Practitioner/cardiologist-1", version).status_code == 200
    assert claim(api, visit["id"], "Practitioner/cardiologist-2", version).status_code == 412
    worklist(
        api,
        "Practitioner/cardiologist-1",
        [("heart-failure.cardiologist-visit", 1, "2025-05-07T23:59:59+02:00")],
    )

    # Until Tuesday 8 April: what each professional did, and when.
    def hf_task(step_code: str, occurrence: int = 1) -> str:
        return hf_tasks[(step_code, occurrence)]

    complete(api, hd_tasks[("discharge-letter", 1)], "2025-03-07T18:00:00+01:00")
    complete(api, hf_task("inclusion"), "2025-03-07T17:15:00+01:00")
    reconciliation = hd_tasks[("medication-reconciliation", 1)]
    complete(api, reconciliation, "2025-03-10T09:00:00+01:00")  # 16 h 30 min late
    complete(api, hf_task("gp-visit"), "2025-03-13T10:00:00+01:00")
    complete(api, hd_tasks[("gp-visit", 1)], "2025-03-13T10:00:00+01:00")
    complete(api, hd_tasks[("follow-up-call", 1)], "2025-03-17T11:00:00+01:00")  # late
    for k, done in enumerate(
        [
            "2025-03-13T09:00:00+01:00",
            "2025-03-20T09:00:00+01:00",
            "2025-03-29T10:00:00+01:00",  # a day late
            "2025-04-03T09:00:00+02:00",
        ],
        1,
    ):
        complete(api, hf_task("nurse-follow-up", k), done, json_patch=True)
    walk(api, hf_task("medication-review"), "accepted")
    dispatch()
    # Every step of the discharge is done: completed with the last of them, the call.
    hd = read(api, "CarePlan", hd["id"])
    assert hd["status"] == "completed"
    assert hd["period"] == {"start": discharge, "end": "2025-03-17T11:00:00+01:00"}

    # The sweep of Tuesday 8 April 9:00: the medication review (accepted, due at the end of
    # 7 April) and the patient's self-monitoring (due 14 March) are late; the weekly visit due
    # on 11 April is not.
    assert sweep(server, datetime(2025, 4, 8, 9, 0, tzinfo=PARIS)) == SweepCounts(
        late=2, overdue=2, escalated=2
    )
    first_late = {hf_task("medication-review"), hf_task("self-monitoring")}
    assert overdue(api) == first_late
    check_escalations(api, first_late, TEAM["coordinator"])

    complete(api, hf_task("medication-review"), "2025-04-10T15:00:00+02:00")  # 3 days late
    for k, done in enumerate(
        [
            "2025-04-10T09:00:00+02:00",
            "2025-04-17T09:00:00+02:00",
            "2025-04-24T09:00:00+02:00",
            "2025-05-05T10:00:00+02:00",  # the eighth, three days late
        ],
        5,
    ):
        complete(api, hf_task("nurse-follow-up", k), done)
    complete(api, visit["id"], "2025-04-28T14:00:00+02:00", json_patch=True)
    extended = [hf_task("nurse-extended-follow-up", k) for k in range(1, 9)]
    assert {read(api, "Task", id_)["status"] for id_ in extended} == {"draft"}

    dispatch()
    # Released from the last weekly visit (Monday 5 May 10:00), 2k weeks after it; the
    # provisional dates counted from the due date of the eighth visit (2 May).
    every_two_weeks = ["05-19", "06-02", "06-16", "06-30", "07-14", "07-28", "08-11", "08-25"]
    for k, id_ in enumerate(extended, 1):
        released = read(api, "Task", id_)
        assert released["status"] == "requested"
        assert released["restriction"]["period"] == {
            "start": "2025-05-05T10:00:00+02:00",
            "end": f"2025-{every_two_weeks[k - 1]}T23:59:59+02:00",
        }
    worklist(
        api,
        TEAM["idel"],
        [
            ("heart-failure.nurse-extended-follow-up", k, f"2025-{day}T23:59:59+02:00")
            for k, day in enumerate(every_two_weeks, 1)
        ],
    )

    # The sweep of Tuesday 20 May 8:00: therapeutic education (due 7 May) and the first
    # two-weekly visit (due 19 May) are late; the self-monitoring was escalated already.
    assert sweep(server, datetime(2025, 5, 20, 8, 0, tzinfo=PARIS)) == SweepCounts(
        late=2, overdue=2, escalated=2
    )
    late = first_late | {hf_task("therapeutic-education"), extended[0]}
    assert overdue(api) == late
    check_escalations(api, late, TEAM["coordinator"])
    worklist(
        api,
        TEAM["coordinator"],
        [
            ("heart-failure.therapeutic-education", 1, "2025-05-07T23:59:59+02:00"),
            *[("escalation", None, None)] * 4,
            ("discharge-alert", None, None),
        ],
    )
    # The yearly review and the two-weekly visits are still to come.
    assert read(api, "CarePlan", hf["id"])["status"] == "active"

    # The indicators of 2025 for the CPTS: the pathways of the patients whose care team it
    # manages are its own (the CarePlan's author), whatever started them.
    assert read(api, "CarePlan", hf["id"]).get("author") == {"reference": ORGANIZATION}
    report = evaluate(api, "heart-failure-inclusions", "2025", "2025", ORGANIZATION)
    assert results(report) == {"inclusions": ({"initial-population": 1}, None)}
    report = evaluate(api, "heart-failure-steps-on-time", "2025", "2025", ORGANIZATION)
    assert results(report) == {
        "gp-visit": (on_time(1, 1, 0, 1), 1.0),  # 13 March <= 14 March
        "cardiologist-visit": (on_time(1, 1, 0, 1), 1.0),  # 28 April <= 7 May
        "medication-review": (on_time(1, 1, 0, 0), 0.0),  # 10 April > 7 April
    }
    report = evaluate(api, "heart-failure-step-delays", "2025", "2025", ORGANIZATION)
    assert results(report) == {
        # 7 March 16:30 -> 13 March 10:00 = 5 d 17 h 30 min = 5.7292 -> 5.73
        "gp-visit": (delays(1, 1), 5.73),
        # 7 March 15:30Z -> 28 April 12:00Z (14:00+02:00) = 51 d 20 h 30 min = 51.8542 -> 51.85
        "cardiologist-visit": (delays(1, 1), 51.85),
        # 7 March 15:30Z -> 10 April 13:00Z = 33 d 21 h 30 min = 33.8958 -> 33.90
        "medication-review": (delays(1, 1), 33.9),
    }
    # The stay ended, no readmission: 0 / 1.
    report = evaluate(api, "heart-failure-readmissions", "2025", "2025", ORGANIZATION)
    assert results(report) == {"readmission-6-months": (readmissions(1, 1, 0), 0.0)}


def test_osteoporosis(api: httpx.Client, server: Server, dispatch: Dispatch) -> None:
    """Mme Moreau, 74, leaves hospital after a hip fracture on Friday 31 January 2025 at 10:00
    (a morning: no alert): a month later is the last day of February. Her care team has a
    radiologist and a rheumatologist but no dentist: a dentist claims the dental check."""
    team = {
        **TEAM,
        "radiologist": "Practitioner/radiologist-1",
        "rheumatologist": "Practitioner/rheumatologist-1",
    }
    enrol(api, ins_patient("pat-1", "Moreau", "Jeanne", "1950-06-15", "250066912345678"), team)
    discharge = "2025-01-31T10:00:00+01:00"
    created(
        api,
        diagnosis("fracture-1", "enc-1", ICD10, "S72.0"),
        stay(
            "enc-1",
            "finished",
            "2025-01-24T18:00:00+01:00",
            discharge,
            diagnosis=[{"condition": {"reference": "Condition/fracture-1"}, "rank": 1}],
        ),
    )
    dispatch()

    assert pathways(api) == {"osteoporosis": 1, "hospital-discharge": 1}
    assert alerts(api, "enc-1") == []
    op, hd = careplan_of(api, "osteoporosis"), careplan_of(api, "hospital-discharge")
    op_tasks, hd_tasks = steps_of(api, op), steps_of(api, hd)
    assert len(op_tasks) == 7

    # 48 h after Friday 10:00 is Sunday 2 February 10:00; a month after 31 January, the end of
    # 28 February; three months, the end of 30 April (+02:00).
    worklist(
        api,
        TEAM["pharmacist"],
        [
            ("osteoporosis.medication-reconciliation", 1, "2025-02-02T10:00:00+01:00"),
            ("hospital-discharge.medication-reconciliation", 1, "2025-02-02T10:00:00+01:00"),
        ],
    )
    worklist(
        api,
        team["radiologist"],
        [("osteoporosis.densitometry", 1, "2025-02-28T23:59:59+01:00")],
    )
    worklist(api, team["rheumatologist"], [])  # the opinion waits for the densitometry
    worklist(api, TEAM["idel"], [])  # the injection waits for the dentist and the opinion
    worklist(
        api,
        TEAM["gp"],
        [
            ("hospital-discharge.gp-visit", 1, "2025-02-07T23:59:59+01:00"),  # 7 d
            ("osteoporosis.gp-follow-up", 1, "2025-02-28T23:59:59+01:00"),  # 1 mo
        ],
    )
    worklist(
        api,
        TEAM["coordinator"],
        [
            ("hospital-discharge.follow-up-call", 1, "2025-02-08T23:59:59+01:00"),  # D+8
            ("osteoporosis.fall-prevention", 1, "2025-04-30T23:59:59+02:00"),  # 3 mo
        ],
    )
    worklist(
        api, HOSPITAL, [("hospital-discharge.discharge-letter", 1, "2025-01-31T23:59:59+01:00")]
    )
    # Provisionally, the opinion is due a month after the densitometry's due date (28 March),
    # the injection a month after the later of its two predecessors' (28 April, +02:00).
    opinion = op_tasks[("rheumatology-opinion", 1)]
    injection = op_tasks[("bisphosphonate-injection", 1)]
    assert read(api, "Task", opinion)["restriction"]["period"] == {
        "start": "2025-02-28T23:59:59+01:00",
        "end": "2025-03-28T23:59:59+01:00",
    }
    assert read(api, "Task", injection)["restriction"]["period"] == {
        "start": "2025-03-28T23:59:59+01:00",
        "end": "2025-04-28T23:59:59+02:00",
    }

    (dental,) = unassigned(api, "dentist")
    assert dental["id"] == op_tasks[("dental-check", 1)]
    dentist = "Practitioner/dentist-1"
    assert claim(api, dental["id"], dentist, dental["meta"]["versionId"]).status_code == 200
    worklist(api, dentist, [("osteoporosis.dental-check", 1, "2025-02-28T23:59:59+01:00")])

    complete(api, hd_tasks[("discharge-letter", 1)], "2025-01-31T14:00:00+01:00")
    # The pharmacy is closed on Sunday: both reconciliations on Monday, 23 h late.
    complete(api, op_tasks[("medication-reconciliation", 1)], "2025-02-03T09:00:00+01:00")
    complete(api, hd_tasks[("medication-reconciliation", 1)], "2025-02-03T09:00:00+01:00")
    complete(api, hd_tasks[("gp-visit", 1)], "2025-02-06T17:00:00+01:00")
    complete(api, hd_tasks[("follow-up-call", 1)], "2025-02-10T10:00:00+01:00")  # late
    complete(api, op_tasks[("densitometry", 1)], "2025-02-20T11:00:00+01:00", json_patch=True)
    walk(api, dental["id"], "accepted")
    dispatch()
    hd = read(api, "CarePlan", hd["id"])
    assert hd["status"] == "completed"
    assert hd["period"] == {"start": discharge, "end": "2025-02-10T10:00:00+01:00"}
    # Released a month after the densitometry (Thursday 20 February 11:00): 20 March.
    assert read(api, "Task", opinion)["restriction"]["period"] == {
        "start": "2025-02-20T11:00:00+01:00",
        "end": "2025-03-20T23:59:59+01:00",
    }
    worklist(
        api,
        team["rheumatologist"],
        [("osteoporosis.rheumatology-opinion", 1, "2025-03-20T23:59:59+01:00")],
    )

    # The sweep of Saturday 1 March 8:00: the dental check (accepted) and the GP follow-up,
    # both due at the end of 28 February, are late.
    assert sweep(server, datetime(2025, 3, 1, 8, 0, tzinfo=PARIS)) == SweepCounts(
        late=2, overdue=2, escalated=2
    )
    late = {dental["id"], op_tasks[("gp-follow-up", 1)]}
    assert overdue(api) == late
    check_escalations(api, late, TEAM["coordinator"])

    complete(api, dental["id"], "2025-03-03T10:00:00+01:00")
    complete(api, op_tasks[("gp-follow-up", 1)], "2025-03-04T16:00:00+01:00")
    dispatch()
    assert read(api, "Task", injection)["status"] == "draft"  # the opinion is still to come
    complete(api, opinion, "2025-03-18T14:00:00+01:00")
    dispatch()
    # Released from the later of its predecessors, the opinion (18 March 14:00; the dental
    # check was on 3 March): a month later, 18 April, +02:00.
    assert read(api, "Task", injection)["restriction"]["period"] == {
        "start": "2025-03-18T14:00:00+01:00",
        "end": "2025-04-18T23:59:59+02:00",
    }
    worklist(
        api,
        TEAM["idel"],
        [("osteoporosis.bisphosphonate-injection", 1, "2025-04-18T23:59:59+02:00")],
    )
    complete(api, op_tasks[("fall-prevention", 1)], "2025-04-15T10:00:00+02:00")
    complete(api, injection, "2025-04-22T09:00:00+02:00", json_patch=True)  # 4 days late
    dispatch()
    # Every step done: the pathway is completed with the last of them, the injection.
    op = read(api, "CarePlan", op["id"])
    assert op["status"] == "completed"
    assert op["period"] == {"start": discharge, "end": "2025-04-22T09:00:00+02:00"}

    assert op.get("author") == {"reference": ORGANIZATION}
    report = evaluate(api, "osteoporosis-inclusions", "2025", "2025", ORGANIZATION)
    assert results(report) == {"inclusions": ({"initial-population": 1}, None)}
    report = evaluate(api, "osteoporosis-steps-on-time", "2025", "2025", ORGANIZATION)
    assert results(report) == {
        "medication-reconciliation": (on_time(1, 1, 0, 0), 0.0),  # 3 Feb 9:00 > 2 Feb 10:00
        "densitometry": (on_time(1, 1, 0, 1), 1.0),  # 20 Feb <= 28 Feb
        "rheumatology-opinion": (on_time(1, 1, 0, 1), 1.0),  # 18 March <= 20 March
    }
    report = evaluate(api, "osteoporosis-step-delays", "2025", "2025", ORGANIZATION)
    assert results(report) == {
        # 31 Jan 10:00 -> 3 Feb 9:00 = 2 d 23 h = 2.9583 -> 2.96
        "medication-reconciliation": (delays(1, 1), 2.96),
        # -> 20 Feb 11:00 = 20 d 1 h = 20.0417 -> 20.04
        "densitometry": (delays(1, 1), 20.04),
        # -> 18 March 14:00 = 28 d (to 28 Feb) + 18 d + 4 h = 46.1667 -> 46.17
        "rheumatology-opinion": (delays(1, 1), 46.17),
    }
    report = evaluate(api, "osteoporosis-readmissions", "2025", "2025", ORGANIZATION)
    assert results(report) == {"readmission-6-months": (readmissions(1, 1, 0), 0.0)}


def test_hospital_discharge(api: httpx.Client, server: Server, dispatch: Dispatch) -> None:
    """M. Lefebvre, who is socially isolated, leaves hospital after a pneumonia on Wednesday
    30 April 2025 at 15:00, the eve of 1 May: a complex discharge, and the coordinator is
    alerted. No social worker in his care team: one claims the social assessment. He is
    readmitted in July."""
    enrol(
        api,
        ins_patient("pat-1", "Lefebvre", "Marcel", "1940-02-02", "140026912345678", gender="male"),
        TEAM,
    )
    discharge = "2025-04-30T15:00:00+02:00"
    created(
        api,
        {  # recorded by the hospital's social service during the stay
            "resourceType": "Observation",
            "id": "isolation-1",
            "status": "final",
            "code": {"coding": [{"system": SNOMED, "code": "422650009"}]},
            "subject": {"reference": PATIENT},
            "effectiveDateTime": "2025-04-28T11:00:00+02:00",
            "valueBoolean": True,
        },
        diagnosis("pneumonia-1", "enc-1", ICD10, "J18.9"),
        stay(
            "enc-1",
            "finished",
            "2025-04-22T20:00:00+02:00",
            discharge,
            diagnosis=[{"condition": {"reference": "Condition/pneumonia-1"}, "rank": 1}],
        ),
    )
    dispatch()

    assert pathways(api) == {"hospital-discharge": 1}
    (alert,) = alerts(api, "enc-1")
    assert alert["owner"] == {"reference": TEAM["coordinator"]}
    assert "30/04/2025 à 15:00" in alert["description"]
    hd = careplan_of(api, "hospital-discharge")
    tasks = steps_of(api, hd)
    assert len(tasks) == 6

    # 48 h after Wednesday 15:00 is Friday 2 May 15:00, the holiday in between counted; a day
    # after the discharge is the end of 1 May.
    worklist(
        api,
        TEAM["coordinator"],
        [
            ("hospital-discharge.complex-discharge-coordination", 1, "2025-05-01T23:59:59+02:00"),
            ("hospital-discharge.follow-up-call", 1, "2025-05-08T23:59:59+02:00"),  # D+8
            ("discharge-alert", None, None),
        ],
    )
    worklist(
        api,
        TEAM["pharmacist"],
        [("hospital-discharge.medication-reconciliation", 1, "2025-05-02T15:00:00+02:00")],
    )
    worklist(api, TEAM["gp"], [("hospital-discharge.gp-visit", 1, "2025-05-07T23:59:59+02:00")])
    worklist(api, TEAM["idel"], [])
    worklist(
        api, HOSPITAL, [("hospital-discharge.discharge-letter", 1, "2025-04-30T23:59:59+02:00")]
    )
    (social,) = unassigned(api, "social-worker")
    assert social["id"] == tasks[("social-assessment", 1)]
    worker = "Practitioner/social-worker-1"
    assert claim(api, social["id"], worker, social["meta"]["versionId"]).status_code == 200
    worklist(
        api, worker, [("hospital-discharge.social-assessment", 1, "2025-05-07T23:59:59+02:00")]
    )

    complete(api, tasks[("discharge-letter", 1)], "2025-04-30T18:00:00+02:00")
    complete(api, tasks[("complex-discharge-coordination", 1)], "2025-05-02T09:00:00+02:00")
    complete(
        api, tasks[("medication-reconciliation", 1)], "2025-05-02T11:00:00+02:00", json_patch=True
    )
    complete(api, tasks[("follow-up-call", 1)], "2025-05-07T10:00:00+02:00")
    walk(api, social["id"], "accepted", "in-progress")
    dispatch()
    assert read(api, "CarePlan", hd["id"])["status"] == "active"

    # The sweep of Thursday 8 May 8:00: the GP visit and the social assessment (in progress),
    # due at the end of 7 May, are late.
    assert sweep(server, datetime(2025, 5, 8, 8, 0, tzinfo=PARIS)) == SweepCounts(
        late=2, overdue=2, escalated=2
    )
    late = {tasks[("gp-visit", 1)], social["id"]}
    assert overdue(api) == late
    check_escalations(api, late, TEAM["coordinator"])

    complete(api, tasks[("gp-visit", 1)], "2025-05-09T10:00:00+02:00")
    done = patch(
        api,
        "Task",
        social["id"],
        [
            {"op": "replace", "path": "/status", "value": "completed"},
            {
                "op": "add",
                "path": "/executionPeriod",
                "value": {"end": "2025-05-09T16:00:00+02:00"},
            },
        ],
    )
    assert done.status_code == 200, done.text
    dispatch()
    hd = read(api, "CarePlan", hd["id"])
    assert hd["status"] == "completed"
    assert hd["period"] == {"start": discharge, "end": "2025-05-09T16:00:00+02:00"}

    # Readmitted on Tuesday 15 July: his care team hears of it at once; the pathway is over,
    # nothing is held.
    created(api, stay("enc-2", "in-progress", "2025-07-15T10:00:00+02:00"))
    dispatch()
    notices = bundle(api, "Communication", encounter="Encounter/enc-2")
    assert sorted(n["recipient"][0]["reference"] for n in notices) == sorted(TEAM.values())
    assert {n["payload"][0]["contentString"] for n in notices} == {
        "Hospitalisation : admission le 15/07/2025 à 10:00."
    }
    assert read(api, "CarePlan", hd["id"])["status"] == "completed"
    assert bundle(api, "Flag", patient=PATIENT) == []

    assert hd.get("author") == {"reference": ORGANIZATION}
    report = evaluate(api, "hospital-discharge-inclusions", "2025", "2025", ORGANIZATION)
    assert results(report) == {"inclusions": ({"initial-population": 1}, None)}
    report = evaluate(api, "hospital-discharge-steps-on-time", "2025", "2025", ORGANIZATION)
    assert results(report) == {
        "discharge-letter": (on_time(1, 1, 0, 1), 1.0),  # 30 April 18:00, the same day
        "medication-reconciliation": (on_time(1, 1, 0, 1), 1.0),  # 2 May 11:00 <= 15:00
        "follow-up-call": (on_time(1, 1, 0, 1), 1.0),  # 7 May <= 8 May
        "gp-visit": (on_time(1, 1, 0, 0), 0.0),  # 9 May > 7 May
    }
    report = evaluate(api, "hospital-discharge-step-delays", "2025", "2025", ORGANIZATION)
    assert results(report) == {
        "discharge-letter": (delays(1, 1), 0.13),  # 3 h = 0.125 -> 0.13 (half up)
        "medication-reconciliation": (delays(1, 1), 1.83),  # 1 d 20 h = 1.8333
        "follow-up-call": (delays(1, 1), 6.79),  # 6 d 19 h = 6.7917
        "gp-visit": (delays(1, 1), 8.79),  # 8 d 19 h = 8.7917
    }
    # Readmitted 75 d 19 h after the end of the stay (within 183 days): 1 / 1.
    report = evaluate(api, "hospital-discharge-readmissions", "2025", "2025", ORGANIZATION)
    assert results(report) == {"readmission-6-months": (readmissions(1, 1, 1), 1.0)}


def test_neurodevelopment(api: httpx.Client, server: Server, dispatch: Dispatch) -> None:
    """Léo, 5, screened by his GP, who refers him to the PCO on Wednesday 15 January 2025 at
    17:00. His care team: the GP and the PCO's coordinating doctor; no assessor (one claims the
    assessment) and no coordinator (the CPTS's coordinator claims the escalation)."""
    team = {"gp": TEAM["gp"], "pco": "Practitioner/pco-1"}
    enrol(
        api,
        ins_patient("pat-1", "Lambert", "Léo", "2019-05-10", "119056912345678", gender="male"),
        team,
    )
    referred = "2025-01-15T17:00:00+01:00"
    created(
        api,
        {
            "resourceType": "ServiceRequest",
            "id": "referral-1",
            "status": "active",
            "intent": "order",
            "code": {"coding": [{"system": SNOMED, "code": "3457005"}]},
            "performerType": {"coding": [{"system": ROLE, "code": "pco"}]},
            "subject": {"reference": PATIENT},
            "requester": {"reference": TEAM["gp"]},
            "authoredOn": referred,
        },
    )
    dispatch()

    assert pathways(api) == {"neurodevelopment": 1}
    tnd = careplan_of(api, "neurodevelopment")
    assert tnd["period"] == {"start": referred}
    assert tnd["contributor"] == [{"reference": TEAM["gp"]}]
    tasks = steps_of(api, tnd)
    assert len(tasks) == 8
    # The PCO validates within 15 days: the end of Thursday 30 January. The rest waits for it.
    worklist(
        api, team["pco"], [("neurodevelopment.pco-validation", 1, "2025-01-30T23:59:59+01:00")]
    )
    worklist(api, team["gp"], [])
    assessment = read(api, "Task", tasks[("first-assessment", 1)])
    assert assessment["status"] == "draft"
    assert assessment["restriction"]["period"] == {  # provisional: 3 mo after 30 January
        "start": "2025-01-30T23:59:59+01:00",
        "end": "2025-04-30T23:59:59+02:00",
    }
    complete(api, tasks[("pco-validation", 1)], "2025-01-28T10:00:00+01:00")
    dispatch()
    # Released from the validation (Tuesday 28 January 10:00): the assessment within 3 months
    # (the end of 28 April, +02:00), the review of the pathway within a year.
    assessment = read(api, "Task", tasks[("first-assessment", 1)])
    assert assessment["status"] == "requested"
    assert assessment["restriction"]["period"] == {
        "start": "2025-01-28T10:00:00+01:00",
        "end": "2025-04-28T23:59:59+02:00",
    }
    worklist(
        api, team["pco"], [("neurodevelopment.pathway-review", 1, "2026-01-28T23:59:59+01:00")]
    )

    (found,) = unassigned(api, "assessor")
    assert found["id"] == assessment["id"]
    assessor = "Practitioner/assessor-1"
    assert claim(api, assessment["id"], assessor, found["meta"]["versionId"]).status_code == 200
    walk(api, assessment["id"], "accepted", "in-progress")
    worklist(api, assessor, [("neurodevelopment.first-assessment", 1, "2025-04-28T23:59:59+02:00")])

    # The sweep of Tuesday 29 April 8:00: the assessment is late. Nobody in the care team
    # coordinates: the escalation is left for a coordinator of the CPTS, who claims it.
    assert sweep(server, datetime(2025, 4, 29, 8, 0, tzinfo=PARIS)) == SweepCounts(
        late=1, overdue=1, escalated=1
    )
    assert overdue(api) == {assessment["id"]}
    check_escalations(api, {assessment["id"]}, None)
    (escalation,) = bundle(
        api,
        "Task",
        code=f"{COORDINATION}|",
        status="requested",
        **{"owner:missing": "true"},
    )
    coordinator = TEAM["coordinator"]
    response = claim(api, escalation["id"], coordinator, escalation["meta"]["versionId"])
    assert response.status_code == 200, response.text
    worklist(api, coordinator, [("escalation", None, None)])

    # Completed under the PCO's flat fee it was planned with; a second funding source is
    # refused (never funded twice).
    current = read(api, "Task", assessment["id"])
    aid = {
        "url": FUNDING,
        "valueCoding": {"system": f"{C}/CodeSystem/funding-source", "code": "cpts-aid"},
    }
    finished = {"end": "2025-05-06T10:00:00+02:00"}  # 8 days late
    twice = move(
        api,
        assessment["id"],
        "completed",
        executionPeriod=finished,
        extension=[*current["extension"], aid],
    )
    assert twice.status_code == 422, twice.text
    assert move(api, assessment["id"], "completed", executionPeriod=finished).status_code == 200
    assert [
        e["valueCoding"]["code"]
        for e in read(api, "Task", assessment["id"])["extension"]
        if e["url"] == FUNDING
    ] == ["pco-forfait"]
    dispatch()
    # Released from the assessment (Tuesday 6 May 10:00): the report within a month (6 June),
    # the synthesis meeting within 6 months (6 November, +01:00 again).
    for key, end in [
        (("pco-report", 1), "2025-06-06T23:59:59+02:00"),
        (("synthesis-meeting", 1), "2025-11-06T23:59:59+01:00"),
    ]:
        assert read(api, "Task", tasks[key])["restriction"]["period"] == {
            "start": "2025-05-06T10:00:00+02:00",
            "end": end,
        }
    (found,) = unassigned(api, "assessor")
    assert found["id"] == tasks[("pco-report", 1)]
    assert claim(api, found["id"], assessor, found["meta"]["versionId"]).status_code == 200
    complete(api, found["id"], "2025-05-30T10:00:00+02:00", json_patch=True)
    worklist(
        api,
        team["pco"],
        [
            ("neurodevelopment.synthesis-meeting", 1, "2025-11-06T23:59:59+01:00"),
            ("neurodevelopment.pathway-review", 1, "2026-01-28T23:59:59+01:00"),
        ],
    )
    complete(api, tasks[("synthesis-meeting", 1)], "2025-10-20T14:00:00+02:00")
    dispatch()
    # 15 days after Monday 20 October 14:00: the end of 4 November, after the autumn change.
    worklist(
        api,
        team["pco"],
        [
            ("neurodevelopment.family-report", 1, "2025-11-04T23:59:59+01:00"),
            ("neurodevelopment.gp-report", 1, "2025-11-04T23:59:59+01:00"),
            ("neurodevelopment.pathway-review", 1, "2026-01-28T23:59:59+01:00"),
        ],
    )
    complete(api, tasks[("family-report", 1)], "2025-10-31T10:00:00+01:00")
    complete(api, tasks[("gp-report", 1)], "2025-11-05T09:00:00+01:00")  # a day late
    complete(api, tasks[("pathway-review", 1)], "2026-01-20T10:00:00+01:00")
    dispatch()  # the three completions handled together, as a worker that ran once since
    # Every required step done: completed with the review; the renewal, optional, is released
    # all the same (whichever completion was handled first), due a year after the review.
    tnd = read(api, "CarePlan", tnd["id"])
    assert tnd["status"] == "completed"
    assert tnd["period"] == {"start": referred, "end": "2026-01-20T10:00:00+01:00"}
    worklist(
        api, team["pco"], [("neurodevelopment.renewal-review", 1, "2027-01-20T23:59:59+01:00")]
    )

    assert tnd.get("author") == {"reference": ORGANIZATION}
    report = evaluate(api, "neurodevelopment-inclusions", "2025", "2025", ORGANIZATION)
    assert results(report) == {"inclusions": ({"initial-population": 1}, None)}
    report = evaluate(api, "neurodevelopment-steps-on-time", "2025", "2025", ORGANIZATION)
    assert results(report) == {
        "pco-validation": (on_time(1, 1, 0, 1), 1.0),  # 28 January <= 30 January
        "first-assessment": (on_time(1, 1, 0, 0), 0.0),  # 6 May > 28 April
    }
    report = evaluate(api, "neurodevelopment-step-delays", "2025", "2025", ORGANIZATION)
    assert results(report) == {
        # 15 Jan 17:00 -> 28 Jan 10:00 = 12 d 17 h = 12.7083 -> 12.71
        "pco-validation": (delays(1, 1), 12.71),
        # 15 Jan 16:00Z -> 6 May 8:00Z (10:00+02:00) = 111 d - 8 h = 110.6667 -> 110.67
        "first-assessment": (delays(1, 1), 110.67),
    }
