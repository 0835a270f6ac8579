"""Progression over HTTP, on SQLite and PostgreSQL: a completed step releases the steps
waiting for it with deadlines computed from its completion, the last required step completes
the CarePlan, and handling an event twice or two completions at once changes nothing more."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx

from fhir_server.engine.interaction import Context
from fhir_server.outbox import OutboxEvent
from fhir_server.server import Server
from pathways.progression import NAME, Progression
from tests.pathways.builders import careplan, complete, created, duration, read, task

Dispatch = Callable[[], int]


def status(api: httpx.Client, type_: str, id_: str) -> str:
    return read(api, type_, id_)["status"]


def version(api: httpx.Client, type_: str, id_: str) -> int:
    return int(read(api, type_, id_)["meta"]["versionId"])


def period(api: httpx.Client, id_: str) -> dict[str, str]:
    return read(api, "Task", id_)["restriction"]["period"]


def test_a_chain_releases_each_step_when_the_one_before_is_completed(
    api: httpx.Client, dispatch: Dispatch
) -> None:
    created(
        api,
        careplan("cp-1", task_ids=["a", "b", "c"]),
        task("a", "cp-1", step="gp-visit"),
        task("b", "cp-1", step="cardiology", status="draft", depends_on=["a"]),
        task(
            "c",
            "cp-1",
            step="review",
            status="draft",
            depends_on=["b"],
            due_within=duration(2, "mo"),
        ),
    )
    complete(api, "a", end="2026-11-24T15:00:00+01:00")
    dispatch()
    assert status(api, "Task", "b") == "requested"
    # 7 days from Tuesday 24 November 15:00: the end of Tuesday 1 December, Paris time
    assert period(api, "b") == {
        "start": "2026-11-24T15:00:00+01:00",
        "end": "2026-12-01T23:59:59+01:00",
    }
    assert status(api, "Task", "c") == "draft"
    assert status(api, "CarePlan", "cp-1") == "active"

    complete(api, "b", end="2026-12-30T09:15:00+01:00")
    dispatch()
    # 2 months from 30 December: 28 February (2027 is not a leap year)
    assert period(api, "c") == {
        "start": "2026-12-30T09:15:00+01:00",
        "end": "2027-02-28T23:59:59+01:00",
    }
    assert status(api, "CarePlan", "cp-1") == "active"

    complete(api, "c", end="2027-01-05T11:00:00+01:00")
    dispatch()
    finished = read(api, "CarePlan", "cp-1")
    assert finished["status"] == "completed"
    assert finished["period"] == {
        "start": "2026-11-23T15:00:00+01:00",
        "end": "2027-01-05T11:00:00+01:00",
    }


def join_plan(api: httpx.Client) -> None:
    created(
        api,
        careplan("cp-1"),
        task("a1", "cp-1", step="discharge-letter"),
        task("a2", "cp-1", step="reconciliation"),
        task(
            "b",
            "cp-1",
            step="gp-visit",
            status="draft",
            depends_on=["a1", "a2"],
            due_within=duration(48, "h"),
        ),
    )


def test_a_join_waits_for_every_predecessor_and_starts_at_the_last(
    api: httpx.Client, dispatch: Dispatch
) -> None:
    join_plan(api)
    complete(api, "a2", end="2026-11-25T08:00:00+01:00")
    dispatch()
    assert status(api, "Task", "b") == "draft"
    # a1 was completed before a2 but recorded after it: the anchor is the later completion
    complete(api, "a1", end="2026-11-24T18:30:00+01:00")
    dispatch()
    assert period(api, "b") == {
        "start": "2026-11-25T08:00:00+01:00",
        "end": "2026-11-27T08:00:00+01:00",
    }
    assert status(api, "Task", "b") == "requested"
    assert status(api, "CarePlan", "cp-1") == "active"


def test_two_predecessors_completed_together_release_the_join_once(
    api: httpx.Client, server: Server, dispatch: Dispatch
) -> None:
    """Both completions are committed before any event is handled; on PostgreSQL two
    dispatchers handle the two events at the same time."""
    join_plan(api)
    complete(api, "a1", end="2026-11-24T18:30:00+01:00")
    complete(api, "a2", end="2026-11-25T08:00:00+01:00")
    barrier = threading.Barrier(2)

    def work() -> None:
        barrier.wait()
        server.dispatcher().run_once()

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    dispatch()
    released = read(api, "Task", "b")
    assert released["status"] == "requested"
    assert released["meta"]["versionId"] == "2"
    assert released["restriction"]["period"]["start"] == "2026-11-25T08:00:00+01:00"


def test_the_occurrences_of_a_series_are_released_with_their_own_deadlines(
    api: httpx.Client, dispatch: Dispatch
) -> None:
    """Weekly nurse visits after the GP visit, and a call from the second day after it, due
    within 24 h; daylight saving ends on Sunday 25 October 2026."""
    weeks = range(1, 4)
    created(
        api,
        careplan("cp-1"),
        task("gp", "cp-1", step="gp-visit"),
        *(
            task(
                f"idel-{k}",
                "cp-1",
                step="idel-visit",
                status="draft",
                depends_on=["gp"],
                due_within=duration(k, "wk"),
                occurrence=k,
            )
            for k in weeks
        ),
        task(
            "call",
            "cp-1",
            step="phone-call",
            status="draft",
            depends_on=["gp"],
            offset=duration(2, "d"),
            due_within=duration(24, "h"),
            required=False,
        ),
    )
    complete(api, "gp", end="2026-10-23T10:00:00+02:00")
    dispatch()
    ends = [period(api, f"idel-{k}")["end"] for k in weeks]
    assert ends == [
        "2026-10-30T23:59:59+01:00",
        "2026-11-06T23:59:59+01:00",
        "2026-11-13T23:59:59+01:00",
    ]
    assert {period(api, f"idel-{k}")["start"] for k in weeks} == {"2026-10-23T10:00:00+02:00"}
    assert period(api, "call") == {
        "start": "2026-10-25T23:59:59+01:00",
        "end": "2026-10-26T23:59:59+01:00",
    }


def test_the_careplan_waits_for_its_required_steps_only(
    api: httpx.Client, dispatch: Dispatch
) -> None:
    created(
        api,
        careplan("cp-1"),
        task("gp", "cp-1", step="gp-visit"),
        task("cardio", "cp-1", step="cardiology"),
        task("education", "cp-1", step="education", required=False),
    )
    complete(api, "education", end="2026-11-24T10:00:00+01:00")
    complete(api, "cardio", end="2026-11-26T10:00:00+01:00")
    dispatch()
    assert status(api, "CarePlan", "cp-1") == "active"
    complete(api, "gp", end="2026-11-25T10:00:00+01:00")
    dispatch()
    finished = read(api, "CarePlan", "cp-1")
    assert finished["status"] == "completed"
    # the time of the last required completion, not of the event that noticed it
    assert finished["period"]["end"] == "2026-11-26T10:00:00+01:00"


def test_a_step_voided_as_entered_in_error_is_not_waited_for(
    api: httpx.Client, dispatch: Dispatch
) -> None:
    created(api, careplan("cp-1"), task("gp", "cp-1"), task("wrong", "cp-1", step="cardiology"))
    wrong = read(api, "Task", "wrong")
    response = api.put(
        "/Task/wrong",
        json={**wrong, "status": "entered-in-error"},
        headers={"content-type": "application/fhir+json"},
    )
    assert response.status_code == 200, response.text
    complete(api, "gp", end="2026-11-25T10:00:00+01:00")
    dispatch()
    assert status(api, "CarePlan", "cp-1") == "completed"


def test_an_event_handled_twice_changes_nothing_more(
    api: httpx.Client, server: Server, dispatch: Dispatch
) -> None:
    created(
        api,
        careplan("cp-1"),
        task("a", "cp-1"),
        task("b", "cp-1", status="draft", depends_on=["a"], required=False),
    )
    done = complete(api, "a", end="2026-11-24T15:00:00+01:00")
    dispatch()
    versions = (version(api, "Task", "b"), version(api, "CarePlan", "cp-1"))
    assert versions == (2, 2)
    event = OutboxEvent(0, NAME, "update", "Task", "a", int(done["meta"]["versionId"]), 0)
    consumer = Progression(server.engine)
    context = Context(source=f"outbox:{NAME}")
    server.engine.in_transaction(True, context, lambda uow: consumer.handle(event, uow, context))
    assert (version(api, "Task", "b"), version(api, "CarePlan", "cp-1")) == versions
    assert dispatch() == 0
