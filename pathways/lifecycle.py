"""The Task lifecycle: the FHIR R4 Task state machine, enforced on every Task write from every
door (REST, PATCH, transaction Bundles, adapters, the pathway engine itself) by one
BEFORE_STORAGE hook, so that no door can move a task where the state machine does not lead.

Besides the state machine the hook keeps the rules of pathway tasks that hold for every writer:
a completed task says when it was completed (`executionPeriod.end`), an unassigned task is
claimed with `If-Match` so that two professionals never both get it, and a neurodevelopment
assessment is completed with exactly one funding source. The choices are explained in
docs/pathways.md ("Task lifecycle").
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from fhir_server.engine.hooks import HookPoint
from fhir_server.engine.interaction import Context
from fhir_server.engine.unit_of_work import Change, UnitOfWork
from fhir_server.errors import FhirError
from fhir_server.formats.json_format import loads
from fhir_server.server import Server
from pathways.canonical import FUNDING_EXTENSION, FUNDING_SYSTEM, STEP_SYSTEM
from pathways.timing import fhir_datetime

TND_ASSESSMENT = "neurodevelopment.*assessment*"

# The R4 Task state machine, exactly as R4 draws it (task.html#statemachine): status -> the
# statuses one update may move a task to. The diagram's box around ready, requested, received,
# accepted and rejected has one arrow to cancelled, so each of them may be cancelled; completed,
# failed and cancelled lead nowhere.
R4_TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"requested", "ready", "cancelled"}),
    "requested": frozenset({"received", "accepted", "rejected", "cancelled"}),
    "received": frozenset({"accepted", "rejected", "cancelled"}),
    "accepted": frozenset({"in-progress", "cancelled"}),
    "ready": frozenset({"in-progress", "cancelled"}),
    "rejected": frozenset({"cancelled"}),
    "in-progress": frozenset({"on-hold", "completed", "failed"}),
    "on-hold": frozenset({"in-progress"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
    "entered-in-error": frozenset(),
}
ENTERED_IN_ERROR = "entered-in-error"
ON_HOLD = "on-hold"
# What this server adds for every door: a pathway stopped while a step is started or paused
# (the patient died or moved away, withdrew consent) cancels it; R4 would leave
# only failed for a started step, an error of its performer, and nothing for a paused one.
# Any status may also become entered-in-error (R4's definition: should never have existed).
ADDED_TRANSITIONS: dict[str, frozenset[str]] = {
    "in-progress": frozenset({"cancelled"}),
    "on-hold": frozenset({"cancelled"}),
}
# Where a task may start when a professional creates it (REST): draft, R4's initial state, or
# requested or ready, where draft leads: the same as creating it draft and releasing it at
# once, before any performer has acted on it.
CREATION_STATUSES = frozenset({"draft", "requested", "ready"})
# Open tasks the pathway engine puts on hold when the patient is readmitted (R4's on-hold is
# "started but paused": only in-progress tasks), and resumes to the status they had.
HOLDABLE = frozenset({"requested", "received", "accepted", "ready", "in-progress"})
# Doors of the pathway engine itself (outbox consumers, operations of the pathway package).
ENGINE_SOURCES = ("outbox:", "pathway")


def is_engine(context: Context) -> bool:
    """Whether the write comes from the pathway engine rather than from a professional."""
    return context.source.startswith(ENGINE_SOURCES)


def next_statuses(old: str) -> frozenset[str]:
    """The statuses any door may move a task in status `old` to."""
    if old not in R4_TRANSITIONS:
        return frozenset()
    targets = R4_TRANSITIONS[old] | ADDED_TRANSITIONS.get(old, frozenset()) | {ENTERED_IN_ERROR}
    return targets - {old}


def allowed(old: str, new: str, engine: bool) -> bool:
    """Whether a task may go from status `old` to `new` in one update (`old != new`)."""
    if new in next_statuses(old):
        return True
    return engine and ((old in HOLDABLE and new == ON_HOLD) or (old == ON_HOLD and new in HOLDABLE))


def business_rule(status: int, diagnostics: str, expression: str) -> FhirError:
    return FhirError.of(status, "business-rule", diagnostics, expression)


def before_storage(context: Context, change: Change, uow: UnitOfWork) -> None:
    """Refuses a Task write that breaks the lifecycle (422, or 428 for a claim without
    If-Match), and stamps the completion time."""
    if change.type != "Task" or change.resource is None:
        return
    task = change.resource
    previous = change.previous
    engine = is_engine(context)
    if previous is None:
        check_creation(task, context)
    else:
        check_transition(previous, task, change, uow, engine)
        check_claim(previous, task, change, engine)
        stamp_completion(previous, task, change)
    check_funding(task)


def check_creation(task: dict[str, Any], context: Context) -> None:
    status = task.get("status")
    if context.source == "rest" and status not in CREATION_STATUSES:
        raise business_rule(
            422,
            f"A Task is created as draft, requested or ready, not {status!r}: the other "
            "statuses record what its performer did, update the task to reach them",
            "Task.status",
        )


def check_transition(
    previous: dict[str, Any], task: dict[str, Any], change: Change, uow: UnitOfWork, engine: bool
) -> None:
    old, new = previous.get("status"), task.get("status")
    if old == new:
        return
    if not allowed(old, new, engine):
        targets = ", ".join(sorted(next_statuses(old))) or "nothing, it is final"
        raise business_rule(
            422, f"A Task cannot go from {old!r} to {new!r}; from {old!r}: {targets}", "Task.status"
        )
    if old == ON_HOLD and new in HOLDABLE:
        before = status_before_hold(uow, change)
        if before is not None and before != new:
            raise business_rule(
                422,
                f"A Task put on hold while {before!r} resumes to {before!r}, not {new!r}",
                "Task.status",
            )


def check_claim(
    previous: dict[str, Any], task: dict[str, Any], change: Change, engine: bool
) -> None:
    if engine or previous.get("owner") or not task.get("owner") or change.if_match:
        return
    raise business_rule(
        428,
        "Claiming an unassigned Task (setting its owner) needs If-Match with the version read, "
        "so that two claims of the same task cannot both succeed",
        "Task.owner",
    )


def status_before_hold(uow: UnitOfWork, change: Change) -> str | None:
    """The status a task had before the versions on hold that end with its previous version;
    None when it was created on hold."""
    version = (change.previous_version or 0) - 1
    while version > 0:
        stored = uow.repository.read_version(change.type, change.id, version)
        if stored is None or stored.body is None:
            return None
        status = loads(stored.body).get("status")
        if status != ON_HOLD:
            return status
        version -= 1
    return None


def stamp_completion(previous: dict[str, Any], task: dict[str, Any], change: Change) -> None:
    """A completed task says when it was completed: when the update that completed it was
    stored, unless the client said so; a later update keeps that time."""
    if task.get("status") != "completed" or (task.get("executionPeriod") or {}).get("end"):
        return
    earlier = (previous.get("executionPeriod") or {}).get("end")
    kept = earlier if previous.get("status") == "completed" else None
    task.setdefault("executionPeriod", {})["end"] = kept or fhir_datetime(change.last_updated)


def is_tnd_assessment(task: dict[str, Any]) -> bool:
    return any(
        coding.get("system") == STEP_SYSTEM
        and fnmatchcase(coding.get("code") or "", TND_ASSESSMENT)
        for coding in (task.get("code") or {}).get("coding", [])
    )


def check_funding(task: dict[str, Any]) -> None:
    """A neurodevelopment assessment is completed with exactly one funding source, and keeps
    it: never funded twice, nor not at all (the pathway-task profile allows one at most)."""
    if task.get("status") != "completed" or not is_tnd_assessment(task):
        return
    codings = [
        extension.get("valueCoding") or {}
        for extension in task.get("extension", [])
        if extension.get("url") == FUNDING_EXTENSION
    ]
    if (
        len(codings) != 1
        or codings[0].get("system") != FUNDING_SYSTEM
        or not codings[0].get("code")
    ):
        raise business_rule(
            422,
            f"A neurodevelopment assessment is completed with exactly one funding source "
            f"(extension {FUNDING_EXTENSION}, a code of {FUNDING_SYSTEM}), not {len(codings)}",
            "Task.extension",
        )


def install(server: Server) -> None:
    server.hooks.register(HookPoint.BEFORE_STORAGE, before_storage)
