"""The data the indicator tests evaluate: two CPTS, their patients' hospital stays, CarePlans
and Tasks of the four pathways in the shape of docs/pathways.md, written over HTTP. Tasks are
created requested (or draft) and brought to their status through the transitions the Task
lifecycle allows, one transaction per stage. The numbers each test expects are worked out by
hand in test_measures.py from the dates below (Europe/Paris: +01:00 in winter, +02:00 from
2021-03-28 to 2021-10-31)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from pathways.timing import fhir_datetime
from tests.pathways.builders import FUNDING, PATHS, PATHWAY, STEP, C, duration, pathway_coding
from tests.rest.resources import patient, put_transaction

CPTS_A, CPTS_B = "Organization/cpts-a", "Organization/cpts-b"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DEADLINES = {
    "gp-visit": duration(7, "d"),
    "cardiologist-visit": duration(2, "mo"),
    "medication-review": duration(1, "mo"),
    "discharge-letter": duration(0, "d"),
    "medication-reconciliation": duration(48, "h"),
    "follow-up-call": duration(8, "d"),
    "densitometry": duration(1, "mo"),
    "rheumatology-opinion": duration(1, "mo"),
    "pco-validation": duration(15, "d"),
    "first-assessment": duration(3, "mo"),
}


@dataclass(frozen=True)
class Stay:
    """An Encounter: a hospital stay (class IMP) unless told otherwise."""

    id: str
    patient: str
    start: str
    end: str | None = None
    klass: str = "IMP"
    status: str = "finished"


@dataclass(frozen=True)
class Enrolment:
    """A pathway CarePlan: `start` is its trigger (the end of `stay` when there is one)."""

    id: str
    pathway: str
    patient: str
    cpts: str
    start: str
    stay: str | None = None
    status: str = "active"


@dataclass(frozen=True)
class Step:
    """A Task of an enrolment: its step, due date, final status and completion time."""

    id: str
    enrolment: Enrolment
    step: str
    due: str
    status: str
    done: str | None = None


def organization(reference: str) -> dict[str, Any]:
    return {"resourceType": "Organization", "id": reference.split("/")[1], "name": reference}


def encounter(stay: Stay) -> dict[str, Any]:
    period = {"start": stay.start, **({"end": stay.end} if stay.end else {})}
    return {
        "resourceType": "Encounter",
        "id": stay.id,
        "status": stay.status,
        "class": {"system": ACT_CODE, "code": stay.klass},
        "subject": {"reference": f"Patient/{stay.patient}"},
        "period": period,
    }


def careplan(enrolment: Enrolment) -> dict[str, Any]:
    trigger = enrolment.stay or enrolment.start
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": enrolment.id,
        "meta": {"profile": [f"{C}/StructureDefinition/pathway-careplan"]},
        "extension": [{"url": PATHWAY, "valueCoding": pathway_coding(enrolment.pathway)}],
        "identifier": [
            {
                "system": f"{C}/sid/pathway-careplan",
                "value": f"{enrolment.pathway}|{enrolment.patient}|{trigger}",
            }
        ],
        "instantiatesCanonical": [f"{C}/PlanDefinition/{enrolment.pathway}|1.0.0"],
        "status": enrolment.status,
        "intent": "plan",
        "category": [{"coding": [pathway_coding(enrolment.pathway)]}],
        "subject": {"reference": f"Patient/{enrolment.patient}"},
        "period": {"start": enrolment.start},
        "author": {"reference": enrolment.cpts},
    }
    if enrolment.stay:
        resource["encounter"] = {"reference": f"Encounter/{enrolment.stay}"}
    return resource


def task(step: Step, status: str) -> dict[str, Any]:
    """The Task of `step` at `status` (its completion time once completed)."""
    enrolment = step.enrolment
    extensions: list[dict[str, Any]] = [
        {"url": PATHWAY, "valueCoding": pathway_coding(enrolment.pathway)},
        {
            "url": STEP,
            "extension": [
                {"url": "dueWithin", "valueDuration": DEADLINES[step.step]},
                {"url": "required", "valueBoolean": True},
                {"url": "occurrence", "valueInteger": 1},
            ],
        },
    ]
    if step.step == "first-assessment":
        extensions.append(
            {
                "url": FUNDING,
                "valueCoding": {"system": f"{C}/CodeSystem/funding-source", "code": "pco-forfait"},
            }
        )
    identifier = careplan(enrolment)["identifier"][0]["value"]
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": step.id,
        "meta": {"profile": [f"{C}/StructureDefinition/pathway-task"]},
        "extension": extensions,
        "identifier": [{"system": f"{C}/sid/pathway-task", "value": f"{identifier}|{step.step}|1"}],
        "instantiatesCanonical": f"{C}/ActivityDefinition/{enrolment.pathway}-{step.step}",
        "basedOn": [{"reference": f"CarePlan/{enrolment.id}"}],
        "status": status,
        "intent": "order",
        "priority": "routine",
        "code": {
            "coding": [
                {
                    "system": f"{C}/CodeSystem/pathway-step",
                    "code": f"{enrolment.pathway}.{step.step}",
                }
            ]
        },
        "description": step.step,
        "for": {"reference": f"Patient/{enrolment.patient}"},
        "authoredOn": enrolment.start,
        "requester": {"reference": enrolment.cpts},
        "owner": {"reference": "Practitioner/pro-1"},
        "restriction": {"period": {"start": enrolment.start, "end": step.due}},
    }
    if enrolment.stay:
        resource["encounter"] = {"reference": f"Encounter/{enrolment.stay}"}
    if status == "completed":
        resource["executionPeriod"] = {"end": step.done}
    return resource


def _transaction(api: httpx.Client, resources: list[dict[str, Any]]) -> None:
    bundle = put_transaction(resources)
    response = api.post("/", json=bundle, headers={"content-type": "application/fhir+json"})
    assert response.status_code == 200, response.text


def load(
    api: httpx.Client, stays: list[Stay], enrolments: list[Enrolment], steps: list[Step]
) -> None:
    """Write the organisations, patients, stays, CarePlans and Tasks, then move each Task to its
    status: stage k moves every task whose way there has a k-th status."""
    patients = {s.patient for s in stays} | {e.patient for e in enrolments}
    _transaction(
        api,
        [
            organization(CPTS_A),
            organization(CPTS_B),
            *(patient(family=p, given="Test", id=p) for p in sorted(patients)),
            *(encounter(stay) for stay in stays),
            *(careplan(enrolment) for enrolment in enrolments),
            *(task(step, "draft" if step.status == "draft" else "requested") for step in steps),
        ],
    )
    stages = max(len(PATHS[step.status]) for step in steps)
    for stage in range(stages):
        _transaction(
            api,
            [
                task(step, PATHS[step.status][stage])
                for step in steps
                if len(PATHS[step.status]) > stage
            ],
        )


# -- heart failure: CPTS A in 2020, 2021 and 2022, CPTS B in 2021 ------------------------------

HF_STAYS = [
    Stay("enc-hf-0", "hf-0", "2020-12-10T09:00:00+01:00", "2020-12-20T11:00:00+01:00"),
    Stay("enc-hf-1", "hf-1", "2021-03-01T08:00:00+01:00", "2021-03-10T10:00:00+01:00"),
    # hf-1 back in hospital 153 days and 3 hours after the end of enc-hf-1 (5 months)
    Stay("enc-hf-1-again", "hf-1", "2021-08-10T14:00:00+02:00", "2021-08-20T10:00:00+02:00"),
    Stay("enc-hf-2", "hf-2", "2021-06-01T10:00:00+02:00", "2021-06-05T15:00:00+02:00"),
    # hf-2 back in hospital 213 days and 19 hours after the end of enc-hf-2 (7 months)
    Stay("enc-hf-2-again", "hf-2", "2022-01-05T09:00:00+01:00", "2022-01-12T10:00:00+01:00"),
    Stay("enc-hf-3", "hf-3", "2021-11-20T10:00:00+01:00", "2021-12-20T10:00:00+01:00"),
    # within 183 days of enc-hf-3, but a consultation, and a cancelled admission
    Stay("enc-hf-3-visit", "hf-3", "2022-01-10T10:00:00+01:00", "2022-01-10T11:00:00+01:00", "AMB"),
    Stay("enc-hf-3-off", "hf-3", "2022-01-15T08:00:00+01:00", None, "IMP", "cancelled"),
    Stay("enc-hf-4", "hf-4", "2021-04-01T09:00:00+02:00", "2021-04-05T12:00:00+02:00"),
    # hf-4 (CPTS B) back 30 days after the end of enc-hf-4
    Stay("enc-hf-4-again", "hf-4", "2021-05-05T12:00:00+02:00", "2021-05-08T12:00:00+02:00"),
]
HF_0 = Enrolment(
    "cp-hf-0",
    "heart-failure",
    "hf-0",
    CPTS_A,
    "2020-12-20T11:00:00+01:00",
    "enc-hf-0",
    "completed",
)
HF_1 = Enrolment(
    "cp-hf-1",
    "heart-failure",
    "hf-1",
    CPTS_A,
    "2021-03-10T10:00:00+01:00",
    "enc-hf-1",
    "completed",
)
HF_1B = Enrolment(
    "cp-hf-1b", "heart-failure", "hf-1", CPTS_A, "2021-08-20T10:00:00+02:00", "enc-hf-1-again"
)
HF_2 = Enrolment(
    "cp-hf-2", "heart-failure", "hf-2", CPTS_A, "2021-06-05T15:00:00+02:00", "enc-hf-2"
)
HF_3 = Enrolment(
    "cp-hf-3", "heart-failure", "hf-3", CPTS_A, "2021-12-20T10:00:00+01:00", "enc-hf-3"
)
HF_4 = Enrolment(
    "cp-hf-4", "heart-failure", "hf-4", CPTS_B, "2021-04-05T12:00:00+02:00", "enc-hf-4"
)
# Enrolled by a GP, without a hospital stay; back in hospital, so on hold
HF_5 = Enrolment(
    "cp-hf-5", "heart-failure", "hf-5", CPTS_A, "2021-09-01T12:00:00+02:00", None, "on-hold"
)
HF_6 = Enrolment(
    "cp-hf-6",
    "heart-failure",
    "hf-6",
    CPTS_A,
    "2021-05-01T09:00:00+02:00",
    None,
    "entered-in-error",
)
HF_ENROLMENTS = [HF_0, HF_1, HF_1B, HF_2, HF_3, HF_4, HF_5, HF_6]
HF_STEPS = [
    Step(
        "t-hf-0-gp",
        HF_0,
        "gp-visit",
        "2020-12-27T23:59:59+01:00",
        "completed",
        "2020-12-23T10:00:00+01:00",
    ),
    Step(
        "t-hf-0-cardio",
        HF_0,
        "cardiologist-visit",
        "2021-02-20T23:59:59+01:00",
        "completed",
        "2021-02-18T10:00:00+01:00",
    ),
    Step(
        "t-hf-1-gp",
        HF_1,
        "gp-visit",
        "2021-03-17T23:59:59+01:00",
        "completed",
        "2021-03-14T11:00:00+01:00",
    ),
    Step(
        "t-hf-1-cardio",
        HF_1,
        "cardiologist-visit",
        "2021-05-10T23:59:59+02:00",
        "completed",
        "2021-05-20T09:00:00+02:00",
    ),
    Step(
        "t-hf-1-review",
        HF_1,
        "medication-review",
        "2021-04-10T23:59:59+02:00",
        "completed",
        "2021-03-11T16:00:00+01:00",
    ),
    Step(
        "t-hf-1b-gp",
        HF_1B,
        "gp-visit",
        "2021-08-27T23:59:59+02:00",
        "completed",
        "2021-08-25T09:00:00+02:00",
    ),
    Step("t-hf-1b-cardio", HF_1B, "cardiologist-visit", "2021-10-20T23:59:59+02:00", "accepted"),
    Step(
        "t-hf-1b-review",
        HF_1B,
        "medication-review",
        "2021-09-20T23:59:59+02:00",
        "completed",
        "2021-09-22T08:00:00+02:00",
    ),
    Step("t-hf-2-gp", HF_2, "gp-visit", "2021-06-12T23:59:59+02:00", "requested"),
    Step("t-hf-2-cardio", HF_2, "cardiologist-visit", "2021-08-05T23:59:59+02:00", "cancelled"),
    Step(
        "t-hf-2-review",
        HF_2,
        "medication-review",
        "2021-07-05T23:59:59+02:00",
        "completed",
        "2021-07-05T23:59:59+02:00",
    ),
    Step(
        "t-hf-3-gp",
        HF_3,
        "gp-visit",
        "2021-12-27T23:59:59+01:00",
        "completed",
        "2021-12-29T10:00:00+01:00",
    ),
    Step("t-hf-3-gp-twice", HF_3, "gp-visit", "2021-12-27T23:59:59+01:00", "entered-in-error"),
    Step("t-hf-3-cardio", HF_3, "cardiologist-visit", "2022-02-20T23:59:59+01:00", "requested"),
    Step(
        "t-hf-4-gp",
        HF_4,
        "gp-visit",
        "2021-04-12T23:59:59+02:00",
        "completed",
        "2021-04-09T10:00:00+02:00",
    ),
    Step("t-hf-5-gp", HF_5, "gp-visit", "2021-09-08T23:59:59+02:00", "on-hold"),
    Step("t-hf-5-cardio", HF_5, "cardiologist-visit", "2021-11-01T23:59:59+01:00", "draft"),
]

# -- the other pathways: CPTS A in 2021 --------------------------------------------------------

OTHER_STAYS = [
    Stay("enc-hd-1", "hd-1", "2021-02-01T09:00:00+01:00", "2021-02-05T16:00:00+01:00"),
    # hd-1 back 116 days after the end of enc-hd-1
    Stay("enc-hd-1-again", "hd-1", "2021-06-01T09:00:00+02:00", "2021-06-04T09:00:00+02:00"),
    Stay("enc-os-1", "os-1", "2021-04-02T09:00:00+02:00", "2021-04-06T11:00:00+02:00"),
]
HD_1 = Enrolment(
    "cp-hd-1", "hospital-discharge", "hd-1", CPTS_A, "2021-02-05T16:00:00+01:00", "enc-hd-1"
)
OS_1 = Enrolment("cp-os-1", "osteoporosis", "os-1", CPTS_A, "2021-04-06T11:00:00+02:00", "enc-os-1")
ND_1 = Enrolment("cp-nd-1", "neurodevelopment", "nd-1", CPTS_A, "2021-01-15T10:00:00+01:00")
OTHER_ENROLMENTS = [HD_1, OS_1, ND_1]
OTHER_STEPS = [
    Step(
        "t-hd-1-letter",
        HD_1,
        "discharge-letter",
        "2021-02-05T23:59:59+01:00",
        "completed",
        "2021-02-05T17:30:00+01:00",
    ),
    Step(
        "t-hd-1-reconciliation",
        HD_1,
        "medication-reconciliation",
        "2021-02-07T16:00:00+01:00",
        "completed",
        "2021-02-08T09:00:00+01:00",
    ),
    Step(
        "t-hd-1-call",
        HD_1,
        "follow-up-call",
        "2021-02-13T23:59:59+01:00",
        "completed",
        "2021-02-13T11:00:00+01:00",
    ),
    Step("t-hd-1-gp", HD_1, "gp-visit", "2021-02-12T23:59:59+01:00", "failed"),
    Step(
        "t-os-1-reconciliation",
        OS_1,
        "medication-reconciliation",
        "2021-04-08T11:00:00+02:00",
        "completed",
        "2021-04-07T10:00:00+02:00",
    ),
    Step(
        "t-os-1-densitometry",
        OS_1,
        "densitometry",
        "2021-05-06T23:59:59+02:00",
        "completed",
        "2021-05-20T10:00:00+02:00",
    ),
    Step("t-os-1-opinion", OS_1, "rheumatology-opinion", "2021-06-06T23:59:59+02:00", "draft"),
    Step(
        "t-nd-1-pco",
        ND_1,
        "pco-validation",
        "2021-01-30T23:59:59+01:00",
        "completed",
        "2021-01-25T10:00:00+01:00",
    ),
    Step(
        "t-nd-1-assessment",
        ND_1,
        "first-assessment",
        "2021-04-25T23:59:59+02:00",
        "completed",
        "2021-05-03T10:00:00+02:00",
    ),
]

# -- heart failure now: open, late and next tasks ------------------------------------------------


def current(now: datetime) -> tuple[list[Enrolment], list[Step]]:
    """CarePlans going on now: cp-now-1 (CPTS A) has a late GP visit, an open cardiologist visit
    and a medication review done ahead of its due date; cp-now-2 (CPTS A) an open GP visit and
    a cardiologist visit waiting for it (draft); cp-now-3 (CPTS B) an open GP visit; cp-now-4
    (CPTS A) is completed."""

    def at(days: float) -> str:
        return fhir_datetime(now + timedelta(days=days))

    one = Enrolment("cp-now-1", "heart-failure", "now-1", CPTS_A, at(-10))
    two = Enrolment("cp-now-2", "heart-failure", "now-2", CPTS_A, at(-2))
    three = Enrolment("cp-now-3", "heart-failure", "now-3", CPTS_B, at(-2))
    four = Enrolment("cp-now-4", "heart-failure", "now-4", CPTS_A, at(-20), None, "completed")
    steps = [
        Step("t-now-1-gp", one, "gp-visit", at(-3), "requested"),
        Step("t-now-1-cardio", one, "cardiologist-visit", at(50), "accepted"),
        Step("t-now-1-review", one, "medication-review", at(20), "completed", at(-1)),
        Step("t-now-2-gp", two, "gp-visit", at(5), "requested"),
        Step("t-now-2-cardio", two, "cardiologist-visit", at(60), "draft"),
        Step("t-now-3-gp", three, "gp-visit", at(5), "requested"),
        Step("t-now-4-gp", four, "gp-visit", at(-13), "completed", at(-15)),
    ]
    return [one, two, three, four], steps
