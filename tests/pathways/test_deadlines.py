"""The deadline sweep, on SQLite and PostgreSQL, its effects read over HTTP: exactly the late
open pathway tasks are marked overdue, each gets one escalation task for the coordinator, a
second sweep changes nothing, and two sweeps racing in threads still escalate each late task
once. Sweeps are called with an explicit `now`, never by a background scheduler."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import httpx

from fhir_server.server import Server
from pathways.deadlines import SweepCounts, exclusive_round, scheduled_sweep, sweep
from pathways.timing import PARIS
from tests.pathways.builders import PATIENT, C, careplan, created, read, task, walk
from tests.pathways.test_triggers import ROLE, TEAM, bundle, care_team
from tests.rest.resources import patient

# The builders' tasks are due by the end of Monday 30 November: late on Wednesday morning.
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=PARIS)
OTHER = "Patient/pat-2"
ESCALATION = f"{C}/CodeSystem/coordination-task|escalation"


def of_patient(resource: dict[str, Any], patient_ref: str) -> dict[str, Any]:
    key = "for" if resource["resourceType"] == "Task" else "subject"
    return {**resource, key: {"reference": patient_ref}}


def business_status(api: httpx.Client, id_: str) -> str | None:
    coding = read(api, "Task", id_).get("businessStatus", {}).get("coding", [{}])
    return coding[0].get("code")


def escalations(api: httpx.Client) -> dict[str, dict[str, Any]]:
    """The escalation tasks by the id of the late task they are about."""
    found = bundle(api, "Task", code=ESCALATION)
    by_focus = {e["focus"]["reference"].partition("/")[2]: e for e in found}
    assert len(by_focus) == len(found), "two escalations for one late task"
    return by_focus


def test_the_sweep_marks_the_late_open_tasks_and_escalates_each_once(
    api: httpx.Client, server: Server
) -> None:
    plan = {**careplan("cp-1"), "careTeam": [{"reference": "CareTeam/team-pat-1"}]}
    created(
        api,
        patient(id="pat-1"),
        patient(id="pat-2", family="Martin"),
        care_team(),
        plan,
        of_patient(careplan("cp-2", pathway="osteoporosis"), OTHER),
        task("requested", "cp-1"),
        task("received", "cp-1", step="medication-review"),
        task("accepted", "cp-1", step="nurse-follow-up"),
        task("in-progress", "cp-1", step="therapeutic-education"),
        task("completed", "cp-1", step="inclusion"),
        task("on-hold", "cp-1", step="self-monitoring"),
        task("draft", "cp-1", step="cardiologist-visit", status="draft"),
        task("cancelled", "cp-1", step="yearly-review"),
        {
            **task("not-yet", "cp-1", step="gp-follow-up"),
            "restriction": {"period": {"end": "2026-12-02T23:59:59+01:00"}},
        },
        of_patient(task("unassigned", "cp-2", pathway="osteoporosis", owner=None), OTHER),
        {  # a task outside any pathway: not the pathway engine's to chase
            "resourceType": "Task",
            "id": "plain",
            "status": "requested",
            "intent": "order",
            "for": {"reference": PATIENT},
            "restriction": {"period": {"end": "2026-11-01T12:00:00+01:00"}},
        },
    )
    walk(api, "received", "received")
    walk(api, "accepted", "accepted")
    walk(api, "in-progress", "accepted", "in-progress")
    walk(api, "completed", "accepted", "in-progress", "completed")
    walk(api, "on-hold", "accepted", "in-progress", "on-hold")
    walk(api, "cancelled", "cancelled")
    late = {"requested", "received", "accepted", "in-progress", "unassigned"}

    counts = sweep(server, NOW)

    assert counts == SweepCounts(late=5, overdue=5, escalated=5)
    everything = late | {"completed", "on-hold", "draft", "cancelled", "not-yet", "plain"}
    assert {id_ for id_ in everything if business_status(api, id_) == "overdue"} == late
    found = escalations(api)
    assert set(found) == late
    for id_, escalation in found.items():
        late_task = read(api, "Task", id_)
        assert escalation["status"] == "requested"
        assert escalation["businessStatus"]["coding"][0]["code"] == "escalated"
        assert escalation["identifier"][0]["value"] == late_task["identifier"][0]["value"] + (
            "|escalation"
        )
        assert escalation["basedOn"] == late_task["basedOn"]
        assert escalation["for"] == late_task["for"]
        assert "restriction" not in escalation  # never late itself
    assert found["requested"]["owner"] == {"reference": TEAM["coordinator"]}
    assert "owner" not in found["unassigned"]
    assert found["unassigned"]["performerType"] == [
        {"coding": [{"system": ROLE, "code": "coordinator"}]}
    ]
    versions = {id_: read(api, "Task", id_)["meta"]["versionId"] for id_ in late}

    assert sweep(server, NOW) == SweepCounts()
    assert set(escalations(api)) == late
    assert {id_: read(api, "Task", id_)["meta"]["versionId"] for id_ in late} == versions


def test_two_sweeps_racing_escalate_each_late_task_once(api: httpx.Client, server: Server) -> None:
    ids = [f"late-{n}" for n in range(40)]
    entries = [
        {
            "resource": resource,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
        }
        for resource in [
            patient(id="pat-1"),
            care_team(),
            careplan("cp-1"),
            *(task(id_, "cp-1", step=f"step-{n}") for n, id_ in enumerate(ids)),
        ]
    ]
    response = api.post(
        "/",
        json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
        headers={"content-type": "application/fhir+json"},
    )
    assert response.status_code == 200, response.text
    results: list[SweepCounts] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        results.append(sweep(server, NOW, batch=7))  # several batches each

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert len(results) == 2
    assert sum(r.overdue for r in results) == len(ids)
    assert sum(r.escalated for r in results) == len(ids)
    assert sum(r.refused for r in results) == 0
    assert set(escalations(api)) == set(ids)
    # one update each: the loser of a race was refused by If-Match, never wrote
    assert {read(api, "Task", id_)["meta"]["versionId"] for id_ in ids} == {"2"}


def test_one_scheduled_round_at_a_time_on_postgresql(server: Server) -> None:
    with exclusive_round(server) as first:
        assert first
        with exclusive_round(server) as second:
            assert second is not server.database.is_postgres
        if server.database.is_postgres:
            assert scheduled_sweep(server) is None  # another worker is sweeping: skip
    with exclusive_round(server) as again:
        assert again
