"""The Task lifecycle over HTTP, on SQLite and PostgreSQL: the R4 state machine for every
update, PATCH and transaction entry, the completion time, claiming with If-Match, the pathway
engine's hold and resume, and the funding source of neurodevelopment assessments."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.errors import FhirError
from fhir_server.server import Server
from tests.pathways.builders import (
    FUNDING,
    NURSE,
    PATHS,
    C,
    careplan,
    created,
    move,
    put,
    read,
    task,
    walk,
)

STATUSES = list(PATHS)
# What R4 draws (task.html#statemachine), written out by hand: status -> the statuses one
# update may move a task to; ready, requested, received, accepted and rejected sit in the box
# whose arrow leads to cancelled.
R4: dict[str, set[str]] = {
    "draft": {"requested", "ready", "cancelled"},
    "requested": {"received", "accepted", "rejected", "cancelled"},
    "received": {"accepted", "rejected", "cancelled"},
    "accepted": {"in-progress", "cancelled"},
    "ready": {"in-progress", "cancelled"},
    "rejected": {"cancelled"},
    "in-progress": {"on-hold", "completed", "failed"},
    "on-hold": {"in-progress"},
    "completed": set(),
    "failed": set(),
    "cancelled": set(),
    "entered-in-error": set(),
}
# What the server adds: a started or paused step can be cancelled, anything can be voided.
ADDED = {"in-progress": {"cancelled"}, "on-hold": {"cancelled"}}
EXPECTED = {
    old: (allowed | ADDED.get(old, set()) | {"entered-in-error"}) - {old}
    for old, allowed in R4.items()
}
TRIGGERS = Context(source="outbox:pathway-triggers")


def at_status(api: httpx.Client, id_: str, status: str, **options: Any) -> dict[str, Any]:
    """A new task of CarePlan cp-1, brought to `status` through allowed transitions."""
    initial = status if status in ("draft", "ready") else "requested"
    created(api, task(id_, "cp-1", status=initial, **options))
    return walk(api, id_, *PATHS[status])


def assert_refused(response: httpx.Response, status: int = 422) -> None:
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "business-rule"


def engine_update(server: Server, resource: dict[str, Any], context: Context) -> None:
    """An update by another door than REST (the pathway engine's consumers use this one)."""
    server.engine.execute(
        Interaction(Kind.UPDATE, "Task", resource["id"], resource=resource), context
    )


@pytest.fixture
def plan(api: httpx.Client) -> httpx.Client:
    created(api, careplan("cp-1"))
    return api


def test_every_transition_is_checked_against_the_r4_state_machine(plan: httpx.Client) -> None:
    """All 132 status pairs, on Tasks claiming no profile (the state machine holds for every
    Task; pathway tasks never take `ready`): the allowed ones store a new version, the others
    are refused with 422 business-rule and leave the task as it was."""
    observed: dict[str, set[str]] = {old: set() for old in STATUSES}
    for old in STATUSES:
        for new in STATUSES:
            if new == old:
                continue
            id_ = f"t-{old}-{new}"
            before = at_status(plan, id_, old, profile=False)
            response = move(plan, id_, new)
            after = read(plan, "Task", id_)
            if response.status_code == 200:
                observed[old].add(new)
                assert after["status"] == new
                assert int(after["meta"]["versionId"]) == int(before["meta"]["versionId"]) + 1
            else:
                assert_refused(response)
                assert after == before, f"{old} -> {new} was refused but changed the task"
    assert observed == EXPECTED


@pytest.mark.parametrize("status", ["draft", "requested", "ready"])
def test_a_professional_creates_a_task_draft_requested_or_ready(
    plan: httpx.Client, status: str
) -> None:
    response = put(plan, task("t-1", "cp-1", status=status, profile=False))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "status", [s for s in STATUSES if s not in ("draft", "requested", "ready")]
)
def test_a_professional_cannot_create_a_task_further_on(plan: httpx.Client, status: str) -> None:
    assert_refused(put(plan, task("t-1", "cp-1", status=status, profile=False)))
    assert plan.get("/Task/t-1").status_code == 404


def test_an_import_door_records_a_task_in_the_status_it_reached_elsewhere(
    plan: httpx.Client, server: Server
) -> None:
    record = task("t-1", "cp-1", status="in-progress")
    server.engine.execute(
        Interaction(Kind.UPDATE, "Task", "t-1", resource=record), Context(source="demo")
    )
    assert read(plan, "Task", "t-1")["status"] == "in-progress"


def test_completing_stamps_the_completion_time(plan: httpx.Client) -> None:
    at_status(plan, "t-1", "in-progress")
    done = move(plan, "t-1", "completed").json()
    end = datetime.fromisoformat(done["executionPeriod"]["end"])
    stored = datetime.fromisoformat(done["meta"]["lastUpdated"])
    assert abs(end - stored) < timedelta(seconds=1)
    # An edit of the completed task that drops the time (a note added) keeps it
    edited = {k: v for k, v in done.items() if k != "executionPeriod"}
    noted = put(plan, {**edited, "note": [{"text": "seen"}]}).json()
    assert noted["executionPeriod"] == done["executionPeriod"]


def test_a_completion_time_given_by_the_client_is_kept(plan: httpx.Client) -> None:
    at_status(plan, "t-1", "in-progress")
    end = "2026-11-24T10:30:00+01:00"
    done = move(plan, "t-1", "completed", executionPeriod={"end": end}).json()
    assert done["executionPeriod"] == {"end": end}


def test_two_nurses_claiming_the_same_task_one_gets_it(plan: httpx.Client) -> None:
    created(plan, task("t-1", "cp-1", owner=None))
    unassigned = read(plan, "Task", "t-1")
    barrier = threading.Barrier(2)
    statuses: dict[str, int] = {}

    def claim(nurse: str) -> None:
        with httpx.Client(base_url=str(plan.base_url), timeout=30) as client:
            barrier.wait()
            response = put(
                client,
                {**unassigned, "owner": {"reference": nurse}},
                **{"if-match": f'W/"{unassigned["meta"]["versionId"]}"'},
            )
            statuses[nurse] = response.status_code

    nurses = ["Practitioner/idel-1", "Practitioner/idel-2"]
    threads = [threading.Thread(target=claim, args=(nurse,)) for nurse in nurses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses.values()) == [200, 412]
    winner = next(nurse for nurse, status in statuses.items() if status == 200)
    claimed = read(plan, "Task", "t-1")
    assert claimed["owner"] == {"reference": winner}
    assert claimed["meta"]["versionId"] == "2"


def test_claiming_without_if_match_is_refused_with_428(plan: httpx.Client) -> None:
    created(plan, task("t-1", "cp-1", owner=None))
    before = read(plan, "Task", "t-1")
    assert_refused(put(plan, {**before, "owner": {"reference": NURSE}}), 428)
    assert read(plan, "Task", "t-1") == before


def test_reassigning_an_owned_task_needs_no_if_match(plan: httpx.Client) -> None:
    created(plan, task("t-1", "cp-1"))
    current = read(plan, "Task", "t-1")
    response = put(plan, {**current, "owner": {"reference": "Practitioner/idel-2"}})
    assert response.status_code == 200, response.text


def test_patch_goes_through_the_same_rules(plan: httpx.Client) -> None:
    created(plan, task("t-1", "cp-1", owner=None))
    json_patch = {"content-type": "application/json-patch+json"}

    def patch(operations: list[dict[str, Any]], **headers: str) -> httpx.Response:
        return plan.patch("/Task/t-1", json=operations, headers={**json_patch, **headers})

    assert_refused(patch([{"op": "replace", "path": "/status", "value": "completed"}]))
    owner = [{"op": "add", "path": "/owner", "value": {"reference": NURSE}}]
    assert_refused(patch(owner), 428)
    assert read(plan, "Task", "t-1")["meta"]["versionId"] == "1"
    assert patch(owner, **{"if-match": 'W/"1"'}).status_code == 200
    accepted = patch([{"op": "replace", "path": "/status", "value": "accepted"}])
    assert accepted.status_code == 200, accepted.text
    fhirpath_patch = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Task.status"},
                    {"name": "value", "valueCode": "requested"},
                ],
            }
        ],
    }
    response = plan.patch(
        "/Task/t-1", json=fhirpath_patch, headers={"content-type": "application/fhir+json"}
    )
    assert_refused(response)
    assert read(plan, "Task", "t-1")["status"] == "accepted"


def test_a_refused_transition_rolls_back_the_whole_transaction(plan: httpx.Client) -> None:
    created(plan, task("t-1", "cp-1"))
    at_status(plan, "t-2", "completed")
    first, second = read(plan, "Task", "t-1"), read(plan, "Task", "t-2")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**first, "status": "accepted"},
                "request": {"method": "PUT", "url": "Task/t-1"},
            },
            {
                "resource": {**second, "status": "in-progress"},
                "request": {"method": "PUT", "url": "Task/t-2"},
            },
        ],
    }
    response = plan.post("/", json=bundle, headers={"content-type": "application/fhir+json"})
    assert_refused(response)
    assert "Bundle.entry[1]" in response.text
    assert read(plan, "Task", "t-1") == first
    assert read(plan, "Task", "t-2") == second


@pytest.mark.parametrize("held", ["requested", "received", "accepted", "in-progress"])
def test_the_pathway_engine_holds_open_tasks_and_resumes_them_as_they_were(
    plan: httpx.Client, server: Server, held: str
) -> None:
    """A readmission puts open tasks on hold (businessStatus rehospitalised); the discharge
    resumes each to the status it had."""
    current = at_status(plan, "t-1", held)
    rehospitalised = {
        "coding": [{"system": f"{C}/CodeSystem/task-business-status", "code": "rehospitalised"}]
    }
    engine_update(
        server, {**current, "status": "on-hold", "businessStatus": rehospitalised}, TRIGGERS
    )
    on_hold = read(plan, "Task", "t-1")
    assert on_hold["status"] == "on-hold"
    others = {"requested", "received", "accepted", "in-progress"} - {held}
    for other in others:
        with pytest.raises(FhirError) as refused:
            engine_update(server, {**on_hold, "status": other}, TRIGGERS)
        assert refused.value.status == 422
    resumed = {k: v for k, v in on_hold.items() if k != "businessStatus"}
    engine_update(server, {**resumed, "status": held}, TRIGGERS)
    assert read(plan, "Task", "t-1")["status"] == held


def test_a_professional_holds_only_a_started_task(plan: httpx.Client, server: Server) -> None:
    at_status(plan, "t-1", "accepted")
    assert_refused(move(plan, "t-1", "on-hold"))
    # Held by the pathway engine while accepted, it does not resume to in-progress over REST
    engine_update(server, {**read(plan, "Task", "t-1"), "status": "on-hold"}, TRIGGERS)
    assert_refused(move(plan, "t-1", "in-progress"))
    # A task started, paused and resumed by its nurse: R4's in-progress <-> on-hold
    at_status(plan, "t-2", "on-hold")
    assert move(plan, "t-2", "in-progress").status_code == 200


def assessment(id_: str, funding: list[str], profile: bool = True) -> dict[str, Any]:
    resource = task(
        id_, "cp-1", pathway="neurodevelopment", step="first-assessment", profile=profile
    )
    resource["extension"] += [
        {"url": FUNDING, "valueCoding": {"system": f"{C}/CodeSystem/funding-source", "code": code}}
        for code in funding
    ]
    return resource


def test_an_assessment_is_completed_with_exactly_one_funding_source(plan: httpx.Client) -> None:
    created(plan, assessment("t-1", []), assessment("t-2", ["pco-forfait"]))
    walk(plan, "t-1", "accepted", "in-progress")
    assert_refused(move(plan, "t-1", "completed"))
    assert read(plan, "Task", "t-1")["status"] == "in-progress"
    walk(plan, "t-2", "accepted", "in-progress", "completed")
    # Removing the funding source of a completed assessment is refused too
    done = read(plan, "Task", "t-2")
    without = [e for e in done["extension"] if e["url"] != FUNDING]
    assert_refused(put(plan, {**done, "extension": without}))


def test_an_assessment_funded_twice_is_not_completed(plan: httpx.Client) -> None:
    """Whatever its profile says: a Task coded as an assessment that claims none."""
    created(plan, assessment("t-1", ["pco-forfait", "cpts-aid"], profile=False))
    walk(plan, "t-1", "accepted", "in-progress")
    assert_refused(move(plan, "t-1", "completed"))
