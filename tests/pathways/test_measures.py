"""The pathway indicators over HTTP, on SQLite and PostgreSQL: `Measure/[id]/$evaluate-measure`
on CarePlans, Tasks and stays written in the shape of docs/pathways.md (tests/pathways/
measure_data.py), every number of the MeasureReports worked out by hand below; its errors; and
the coordinator's view, one CarePlan search with each patient's tasks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from fhir_server.server import Server
from fhir_server.settings import Settings
from tests.conftest import LiveServer
from tests.pathways.measure_data import (
    CPTS_A,
    CPTS_B,
    HF_ENROLMENTS,
    HF_STAYS,
    HF_STEPS,
    OTHER_ENROLMENTS,
    OTHER_STAYS,
    OTHER_STEPS,
    current,
    load,
)

C = "https://cpts-fhir.org/fhir"
POPULATIONS = "http://terminology.hl7.org/CodeSystem/measure-population"
GOOD = {"periodStart": "2021", "periodEnd": "2021", "organization": CPTS_A}


@pytest.fixture
def data(api: httpx.Client) -> httpx.Client:
    load(api, HF_STAYS + OTHER_STAYS, HF_ENROLMENTS + OTHER_ENROLMENTS, HF_STEPS + OTHER_STEPS)
    return api


def evaluate(
    api: httpx.Client, measure: str, start: str, end: str, organization: str = CPTS_A
) -> dict[str, Any]:
    response = api.get(
        f"/Measure/{measure}/$evaluate-measure",
        params={"periodStart": start, "periodEnd": end, "organization": organization},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["resourceType"] == "MeasureReport"
    assert report["status"] == "complete" and report["type"] == "summary"
    assert report["measure"] == f"{C}/Measure/{measure}|0.1.0"
    assert report["period"] == {"start": start, "end": end}
    assert report["reporter"] == {"reference": organization}
    assert datetime.fromisoformat(report["date"]) <= datetime.now(UTC)
    return report


def results(report: dict[str, Any]) -> dict[str, tuple[dict[str, int], Any]]:
    """Group id -> ({population code: count}, measureScore value or None)."""
    found = {}
    for group in report["group"]:
        counts = {}
        for population in group["population"]:
            (coding,) = population["code"]["coding"]
            assert coding["system"] == POPULATIONS
            counts[coding["code"]] = population["count"]
        found[group["id"]] = (counts, group.get("measureScore", {}).get("value"))
    return found


def on_time(initial: int, denominator: int, excluded: int, numerator: int) -> dict[str, int]:
    return {
        "initial-population": initial,
        "denominator": denominator,
        "denominator-exclusion": excluded,
        "numerator": numerator,
    }


def delays(initial: int, completed: int) -> dict[str, int]:
    return {
        "initial-population": initial,
        "measure-population": completed,
        "measure-observation": completed,
    }


def readmissions(initial: int, denominator: int, numerator: int) -> dict[str, int]:
    return {"initial-population": initial, "denominator": denominator, "numerator": numerator}


# -- heart failure, CPTS A, 2021 ---------------------------------------------------------------


def test_heart_failure_indicators_of_a_cpts_for_a_year(data: httpx.Client) -> None:
    # CarePlans of CPTS A started in 2021, not draft nor entered-in-error: cp-hf-1 and cp-hf-1b
    # (both hf-1), cp-hf-2, cp-hf-3, cp-hf-5. Not cp-hf-0 (2020), cp-hf-4 (CPTS B), cp-hf-6
    # (entered-in-error). Patients: hf-1, hf-2, hf-3, hf-5 = 4.
    report = evaluate(data, "heart-failure-inclusions", "2021", "2021")
    assert results(report) == {"inclusions": ({"initial-population": 4}, None)}
    assert report["group"][0]["code"]["coding"][0] == {
        "system": f"{C}/CodeSystem/pathway-indicator",
        "code": "inclusions",
        "display": "Patients included",
    }

    report = evaluate(data, "heart-failure-steps-on-time", "2021", "2021")
    assert report["improvementNotation"]["coding"][0]["code"] == "increase"
    assert [g["code"]["coding"][1]["code"] for g in report["group"]] == [
        "heart-failure.gp-visit",
        "heart-failure.cardiologist-visit",
        "heart-failure.medication-review",
    ]
    assert results(report) == {
        # Due in 2021 (CPTS A, not entered-in-error): t-hf-1-gp, t-hf-1b-gp, t-hf-2-gp,
        # t-hf-3-gp, t-hf-5-gp = 5 (t-hf-0-gp is due in 2020, t-hf-4-gp is CPTS B's,
        # t-hf-3-gp-twice entered-in-error). Decided: the 3 completed and t-hf-2-gp (requested,
        # past due) = 4; t-hf-5-gp is on hold. On time: t-hf-1-gp (03-14 <= 03-17), t-hf-1b-gp
        # (08-25 <= 08-27); not t-hf-3-gp (12-29 > 12-27). 2 / (4 - 0) = 0.5
        "gp-visit": (on_time(5, 4, 0, 2), 0.5),
        # Due in 2021: t-hf-0-cardio (02-20, CarePlan of 2020), t-hf-1-cardio, t-hf-1b-cardio,
        # t-hf-2-cardio, t-hf-5-cardio = 5 (t-hf-3-cardio is due in 2022). Decided:
        # t-hf-0-cardio, t-hf-1-cardio (completed), t-hf-1b-cardio (accepted, past due),
        # t-hf-2-cardio (cancelled) = 4; t-hf-5-cardio is a draft. Excluded: t-hf-2-cardio.
        # On time: t-hf-0-cardio (02-18 <= 02-20); not t-hf-1-cardio (05-20 > 05-10).
        # 1 / (4 - 1) = 0.3333
        "cardiologist-visit": (on_time(5, 4, 1, 1), 0.3333),
        # t-hf-1-review (on time), t-hf-1b-review (09-22 > 09-20), t-hf-2-review (completed at
        # its due date to the second: on time). 2 / 3 = 0.6667
        "medication-review": (on_time(3, 3, 0, 2), 0.6667),
    }

    report = evaluate(data, "heart-failure-step-delays", "2021", "2021")
    assert report["improvementNotation"]["coding"][0]["code"] == "decrease"
    assert results(report) == {
        # Completed, from the CarePlan's start: t-hf-1-gp 03-10 10:00 -> 03-14 11:00 = 4 d 1 h
        # = 4.0417; t-hf-1b-gp 08-20 10:00 -> 08-25 09:00 = 4 d 23 h = 4.9583; t-hf-3-gp
        # 12-20 10:00 -> 12-29 10:00 = 9. Median 4.9583 -> 4.96
        "gp-visit": (delays(5, 3), 4.96),
        # t-hf-0-cardio 2020-12-20 11:00 -> 2021-02-18 10:00 = 59 d 23 h = 1439 h;
        # t-hf-1-cardio 03-10 10:00+01:00 -> 05-20 09:00+02:00 = 70 d 22 h = 1702 h.
        # Median (1439 + 1702) / 2 = 1570.5 h = 65.4375 d -> 65.44
        "cardiologist-visit": (delays(5, 2), 65.44),
        # t-hf-1-review 30 h = 1.25; t-hf-1b-review 08-20 10:00 -> 09-22 08:00 = 32 d 22 h =
        # 32.9167; t-hf-2-review 06-05 15:00 -> 07-05 23:59:59 = 30 d 8 h 59 min 59 s =
        # 30.3750 (30 + 32399 / 86400 = 30.37499). Median 30.37499 -> 30.37
        "medication-review": (delays(3, 3), 30.37),
    }
    quantity = report["group"][0]["measureScore"]
    assert quantity == {
        "value": 4.96,
        "unit": "d",
        "system": "http://unitsofmeasure.org",
        "code": "d",
    }

    # A valid R4 MeasureReport
    response = data.post(
        "/MeasureReport/$validate", json=report, headers={"content-type": "application/fhir+json"}
    )
    assert [i for i in response.json()["issue"] if i["severity"] in ("error", "fatal")] == []

    report = evaluate(data, "heart-failure-readmissions", "2021", "2021")
    # The 5 CarePlans of the inclusions; triggered by a stay that ended: all but cp-hf-5 = 4.
    # Readmitted within 183 days of the end of the stay: cp-hf-1 (enc-hf-1-again 153 d 3 h
    # later). Not cp-hf-1b (no later stay of hf-1), cp-hf-2 (enc-hf-2-again 213 d 19 h later),
    # cp-hf-3 (a consultation, class AMB, and a cancelled admission). 1 / 4 = 0.25
    assert results(report) == {"readmission-6-months": (readmissions(5, 4, 1), 0.25)}


def test_another_cpts_reports_its_own_care_plans_only(data: httpx.Client) -> None:
    # CPTS B: cp-hf-4 only (hf-4)
    report = evaluate(data, "heart-failure-inclusions", "2021", "2021", CPTS_B)
    assert results(report) == {"inclusions": ({"initial-population": 1}, None)}
    report = evaluate(data, "heart-failure-steps-on-time", "2021", "2021", CPTS_B)
    assert results(report) == {
        "gp-visit": (on_time(1, 1, 0, 1), 1.0),  # 04-09 <= 04-12
        "cardiologist-visit": (on_time(0, 0, 0, 0), None),  # nothing to share: no score
        "medication-review": (on_time(0, 0, 0, 0), None),
    }
    report = evaluate(data, "heart-failure-step-delays", "2021", "2021", CPTS_B)
    # 04-05 12:00 -> 04-09 10:00 = 3 d 22 h = 3.9167 -> 3.92
    assert results(report)["gp-visit"] == (delays(1, 1), 3.92)
    assert results(report)["cardiologist-visit"] == (delays(0, 0), None)
    report = evaluate(data, "heart-failure-readmissions", "2021", "2021", CPTS_B)
    # enc-hf-4-again starts 30 days after the end of enc-hf-4: 1 / 1
    assert results(report) == {"readmission-6-months": (readmissions(1, 1, 1), 1.0)}


def test_periods_before_and_after(data: httpx.Client) -> None:
    # 2020: cp-hf-0 (2020-12-20) is included; its GP visit was on time (12-23 <= 12-27), 2 d
    # 23 h after the discharge = 2.9583 -> 2.96; hf-0 was not readmitted: 0 / 1
    assert results(evaluate(data, "heart-failure-inclusions", "2020", "2020")) == {
        "inclusions": ({"initial-population": 1}, None)
    }
    report = evaluate(data, "heart-failure-steps-on-time", "2020-01-01", "2020-12-31")
    assert results(report)["gp-visit"] == (on_time(1, 1, 0, 1), 1.0)
    assert results(report)["cardiologist-visit"] == (on_time(0, 0, 0, 0), None)
    report = evaluate(data, "heart-failure-step-delays", "2020", "2020")
    assert results(report)["gp-visit"] == (delays(1, 1), 2.96)
    report = evaluate(data, "heart-failure-readmissions", "2020", "2020")
    assert results(report) == {"readmission-6-months": (readmissions(1, 1, 0), 0.0)}

    # 2022: nobody included; t-hf-3-cardio (due 2022-02-20, still requested) is late: 0 / 1
    assert results(evaluate(data, "heart-failure-inclusions", "2022", "2022")) == {
        "inclusions": ({"initial-population": 0}, None)
    }
    report = evaluate(data, "heart-failure-steps-on-time", "2022", "2022")
    assert results(report)["cardiologist-visit"] == (on_time(1, 1, 0, 0), 0.0)
    report = evaluate(data, "heart-failure-readmissions", "2022", "2022")
    assert results(report) == {"readmission-6-months": (readmissions(0, 0, 0), None)}

    # The first quarter of 2021, "2021-01" to the end of "2021-03": cp-hf-1 (03-10) is
    # included; t-hf-0-cardio (due 02-20) and t-hf-1-gp (due 03-17) both on time
    assert results(evaluate(data, "heart-failure-inclusions", "2021-01", "2021-03")) == {
        "inclusions": ({"initial-population": 1}, None)
    }
    report = evaluate(data, "heart-failure-steps-on-time", "2021-01", "2021-03")
    assert results(report)["gp-visit"] == (on_time(1, 1, 0, 1), 1.0)
    assert results(report)["cardiologist-visit"] == (on_time(1, 1, 0, 1), 1.0)
    assert results(report)["medication-review"] == (on_time(0, 0, 0, 0), None)


def test_the_other_pathways(data: httpx.Client) -> None:
    # Hospital discharge: cp-hd-1. Letter 17:30 the day of discharge (on time), reconciliation
    # 02-08 09:00 > 02-07 16:00 (late), call 02-13 11:00 <= 02-13 23:59:59 (on time), GP visit
    # failed (decided, not on time)
    report = evaluate(data, "hospital-discharge-steps-on-time", "2021", "2021")
    assert results(report) == {
        "discharge-letter": (on_time(1, 1, 0, 1), 1.0),
        "medication-reconciliation": (on_time(1, 1, 0, 0), 0.0),
        "follow-up-call": (on_time(1, 1, 0, 1), 1.0),
        "gp-visit": (on_time(1, 1, 0, 0), 0.0),
    }
    report = evaluate(data, "hospital-discharge-step-delays", "2021", "2021")
    # From 02-05 16:00: letter 1 h 30 = 0.0625 -> 0.06; reconciliation 2 d 17 h = 2.7083 ->
    # 2.71; call 7 d 19 h = 7.7917 -> 7.79; the failed GP visit has no completion
    assert results(report) == {
        "discharge-letter": (delays(1, 1), 0.06),
        "medication-reconciliation": (delays(1, 1), 2.71),
        "follow-up-call": (delays(1, 1), 7.79),
        "gp-visit": (delays(1, 0), None),
    }
    # enc-hd-1-again starts 115 d 16 h after the end of enc-hd-1
    report = evaluate(data, "hospital-discharge-readmissions", "2021", "2021")
    assert results(report) == {"readmission-6-months": (readmissions(1, 1, 1), 1.0)}
    assert results(evaluate(data, "hospital-discharge-inclusions", "2021", "2021")) == {
        "inclusions": ({"initial-population": 1}, None)
    }

    # Osteoporosis: reconciliation on time (04-07 10:00 <= 04-08 11:00, 23 h = 0.9583 -> 0.96),
    # densitometry late (05-20 > 05-06, 43 d 23 h = 43.9583 -> 43.96), the opinion waits
    # for it (draft: not decided); no readmission
    report = evaluate(data, "osteoporosis-steps-on-time", "2021", "2021")
    assert results(report) == {
        "medication-reconciliation": (on_time(1, 1, 0, 1), 1.0),
        "densitometry": (on_time(1, 1, 0, 0), 0.0),
        "rheumatology-opinion": (on_time(1, 0, 0, 0), None),
    }
    report = evaluate(data, "osteoporosis-step-delays", "2021", "2021")
    assert results(report)["medication-reconciliation"] == (delays(1, 1), 0.96)
    assert results(report)["densitometry"] == (delays(1, 1), 43.96)
    report = evaluate(data, "osteoporosis-readmissions", "2021", "2021")
    assert results(report) == {"readmission-6-months": (readmissions(1, 1, 0), 0.0)}

    # Neurodevelopment (no stay): PCO validation on time (01-25 <= 01-30, 10 d), first
    # assessment late (05-03 > 04-25; 01-15 10:00+01:00 -> 05-03 10:00+02:00 = 107 d 23 h =
    # 107.9583 -> 107.96); no readmission Measure
    report = evaluate(data, "neurodevelopment-steps-on-time", "2021", "2021")
    assert results(report) == {
        "pco-validation": (on_time(1, 1, 0, 1), 1.0),
        "first-assessment": (on_time(1, 1, 0, 0), 0.0),
    }
    report = evaluate(data, "neurodevelopment-step-delays", "2021", "2021")
    assert results(report) == {
        "pco-validation": (delays(1, 1), 10.0),
        "first-assessment": (delays(1, 1), 107.96),
    }
    assert results(evaluate(data, "neurodevelopment-inclusions", "2021", "2021")) == {
        "inclusions": ({"initial-population": 1}, None)
    }


def test_tasks_not_yet_due_wait_for_their_deadline(api: httpx.Client) -> None:
    now = datetime.now(UTC)
    load(api, [], *current(now))
    start = (now - timedelta(days=30)).date().isoformat()
    end = (now + timedelta(days=90)).date().isoformat()
    report = evaluate(api, "heart-failure-steps-on-time", start, end)
    assert results(report) == {
        # t-now-1-gp (3 days late), t-now-2-gp (due in 5 days: not decided yet), t-now-4-gp
        # (done 2 days early): 1 / 2
        "gp-visit": (on_time(3, 2, 0, 1), 0.5),
        # t-now-1-cardio (accepted, due in 50 days), t-now-2-cardio (draft): neither decided
        "cardiologist-visit": (on_time(2, 0, 0, 0), None),
        # t-now-1-review, due in 20 days, done yesterday: decided, on time
        "medication-review": (on_time(1, 1, 0, 1), 1.0),
    }


def test_the_numbers_do_not_depend_on_the_page_size(data: httpx.Client, server: Server) -> None:
    """Every search of an evaluation is read to its last page: the same database served with
    pages of 2 resources (and 2 patients per stay search) gives the same reports."""
    small = Server(
        Settings(
            database_url=server.settings.database_url,
            max_page_size=2,
            max_include=2,
            security_enabled=False,
        ),
        load_conformance=False,
    )
    live = LiveServer(small)
    try:
        with httpx.Client(base_url=live.url, timeout=30) as paged:
            for measure in (
                "heart-failure-inclusions",
                "heart-failure-steps-on-time",
                "heart-failure-step-delays",
                "heart-failure-readmissions",
            ):
                expected = evaluate(data, measure, "2021", "2021")
                assert results(evaluate(paged, measure, "2021", "2021")) == results(expected)
    finally:
        live.stop()
        small.close()


def test_parameters_in_a_post_body(data: httpx.Client) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "periodStart", "valueDate": "2021"},
            {"name": "periodEnd", "valueDate": "2021"},
            {"name": "reportType", "valueCode": "population"},
            {"name": "organization", "valueReference": {"reference": CPTS_A}},
        ],
    }
    response = data.post(
        "/Measure/heart-failure-readmissions/$evaluate-measure",
        json=body,
        headers={"content-type": "application/fhir+json"},
    )
    assert response.status_code == 200, response.text
    assert results(response.json()) == {"readmission-6-months": (readmissions(5, 4, 1), 0.25)}


@pytest.mark.parametrize(
    "pathway", ["heart-failure", "hospital-discharge", "osteoporosis", "neurodevelopment"]
)
def test_the_measures_report_steps_of_the_pathway(api: httpx.Client, pathway: str) -> None:
    """Every step a Measure reports is a step (action code) of the pathway's PlanDefinition."""
    plan = api.get(f"/PlanDefinition/{pathway}").json()
    steps = {c["code"] for a in plan["action"] for c in a["code"][0]["coding"]}
    for indicator in ("steps-on-time", "step-delays"):
        measure = api.get(f"/Measure/{pathway}-{indicator}").json()
        reported = {g["code"]["coding"][1]["code"] for g in measure["group"]}
        assert reported and reported <= steps, reported - steps


def test_the_steps_reported_are_data(data: httpx.Client) -> None:
    """A CPTS's own Measure reports the steps its groups name; a group the server cannot
    compute makes the Measure unprocessable."""
    shipped = data.get("/Measure/heart-failure-steps-on-time").json()
    (gp_visit,) = [g for g in shipped["group"] if g["id"] == "gp-visit"]
    measure = {
        "resourceType": "Measure",
        "id": "cpts-a-gp-visits",
        "url": f"{C}/Measure/cpts-a-gp-visits",
        "status": "active",
        "useContext": shipped["useContext"],
        "scoring": shipped["scoring"],
        "group": [gp_visit],
    }
    response = data.put(
        "/Measure/cpts-a-gp-visits", json=measure, headers={"content-type": "application/fhir+json"}
    )
    assert response.status_code == 201, response.text
    response = data.get("/Measure/cpts-a-gp-visits/$evaluate-measure", params=GOOD)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["measure"] == f"{C}/Measure/cpts-a-gp-visits"  # no version to append
    assert results(report) == {"gp-visit": (on_time(5, 4, 0, 2), 0.5)}  # as computed above

    unknown = {"system": f"{C}/CodeSystem/pathway-indicator", "code": "mortality"}
    measure["group"] = [{**gp_visit, "code": {"coding": [unknown]}}]
    response = data.put(
        "/Measure/cpts-a-gp-visits", json=measure, headers={"content-type": "application/fhir+json"}
    )
    assert response.status_code == 200, response.text
    response = data.get("/Measure/cpts-a-gp-visits/$evaluate-measure", params=GOOD)
    assert response.status_code == 422
    assert "names no indicator" in response.json()["issue"][0]["diagnostics"]


def test_the_operation_is_declared(api: httpx.Client) -> None:
    statement = api.get("/metadata").json()
    (measure,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "Measure"]
    assert {
        "name": "evaluate-measure",
        "definition": f"{C}/OperationDefinition/Measure-evaluate-measure",
    } in measure["operation"]


@pytest.mark.parametrize(
    ("changes", "status", "says"),
    [
        ({"periodStart": None}, 400, "needs periodStart"),
        ({"periodEnd": None}, 400, "needs periodEnd"),
        ({"periodStart": "2021-13"}, 400, "periodStart is not a FHIR date"),
        ({"periodEnd": "last year"}, 400, "periodEnd is not a FHIR date"),
        ({"periodStart": "2022", "periodEnd": "2021"}, 400, "periodEnd is before periodStart"),
        ({"organization": None}, 400, "needs organization"),
        ({"organization": "cpts-a"}, 400, "Organization/[id]"),
        ({"organization": "Organization/unknown"}, 400, "Organization/unknown is not known"),
        ({"reportType": "subject-list"}, 400, "only makes population (summary) reports"),
        ({"subject": "Patient/hf-1"}, 400, "does not support the parameter 'subject'"),
    ],
)
def test_bad_parameters_are_refused(
    data: httpx.Client, changes: dict[str, str | None], status: int, says: str
) -> None:
    params = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    response = data.get("/Measure/heart-failure-inclusions/$evaluate-measure", params=params)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert says in outcome["issue"][0]["diagnostics"]


def test_an_unknown_measure_is_not_found(api: httpx.Client) -> None:
    # neurodevelopment has no readmissions Measure: no stay triggers it
    response = api.get("/Measure/neurodevelopment-readmissions/$evaluate-measure", params=GOOD)
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
    response = api.post(
        "/Measure/heart-failure-inclusions/$evaluate-measure",
        json={"resourceType": "Patient"},
        headers={"content-type": "application/fhir+json"},
    )
    assert response.status_code == 400
    assert "takes a Parameters resource" in response.json()["issue"][0]["diagnostics"]


# -- the coordinator's view --------------------------------------------------------------------

VIEW = (
    "/CarePlan?pathway=heart-failure&status=active,on-hold"
    f"&_has:Task:based-on:requester={CPTS_A}"
    "&_revinclude=Task:based-on&_include=CarePlan:subject&_count=20"
)
OPEN = {"requested", "received", "accepted", "in-progress"}


def test_the_coordinators_view(api: httpx.Client) -> None:
    now = datetime.now(UTC)
    load(api, [], *current(now))
    response = api.get(VIEW)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    plans = {e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"}
    included = [e["resource"] for e in entries if e["search"]["mode"] == "include"]
    # CPTS A's CarePlans going on (cp-now-3 is CPTS B's, cp-now-4 completed), their patients
    assert plans == {"cp-now-1", "cp-now-2"}
    assert {r["id"] for r in included if r["resourceType"] == "Patient"} == {"now-1", "now-2"}
    tasks = [r for r in included if r["resourceType"] == "Task"]

    def view(plan: str) -> dict[str, set[str]]:
        """What the coordinator sees of a CarePlan: open tasks, the late ones, and the next
        ones (draft: waiting for the steps they depend on)."""
        mine = [t for t in tasks if t["basedOn"][0]["reference"] == f"CarePlan/{plan}"]
        due = {t["id"]: datetime.fromisoformat(t["restriction"]["period"]["end"]) for t in mine}
        return {
            "open": {t["id"] for t in mine if t["status"] in OPEN},
            "late": {t["id"] for t in mine if t["status"] in OPEN and due[t["id"]] < now},
            "next": {t["id"] for t in mine if t["status"] == "draft"},
        }

    assert view("cp-now-1") == {
        "open": {"t-now-1-gp", "t-now-1-cardio"},
        "late": {"t-now-1-gp"},
        "next": set(),
    }
    assert view("cp-now-2") == {"open": {"t-now-2-gp"}, "late": set(), "next": {"t-now-2-cardio"}}
    # Every task of the two CarePlans, done ones included, came with them
    assert {t["id"] for t in tasks} == {
        "t-now-1-gp",
        "t-now-1-cardio",
        "t-now-1-review",
        "t-now-2-gp",
        "t-now-2-cardio",
    }

    # The late tasks alone, earliest deadline first, with their patients and CarePlans
    response = api.get(
        "/Task",
        params=[
            ("pathway", "heart-failure"),
            ("status", ",".join(sorted(OPEN))),
            ("due-date", f"lt{now.isoformat()}"),
            ("_sort", "due-date"),
            ("_include", "Task:patient"),
            ("_include", "Task:based-on"),
        ],
    )
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"] == [
        "t-now-1-gp"
    ]
    assert {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in entries
        if e["search"]["mode"] == "include"
    } == {"Patient/now-1", "CarePlan/cp-now-1"}
