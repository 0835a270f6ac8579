"""Deadlines of pathway tasks: the sweep that marks late tasks overdue and escalates each to the
coordinator, and the schedule it runs on.

A sweep pages through the open pathway tasks whose due date has passed, each page read in a
read-only transaction and handled in short write transactions of a batch each, so that 100,000
open tasks never make one huge transaction nor hold the write lock of SQLite for long. Each late
task is updated with If-Match of the version read, and its escalation is a conditional create
on an identifier derived from the late task's: two sweeps racing (two workers, or a worker and
the API process) mark each task once and escalate it once, the loser's update failing with 412.
On PostgreSQL a scheduled round also takes an advisory lock, so that several workers do not all
read the same pages for nothing (correctness does not depend on it).

The coordinator tasks of the pathway engine (escalations here, discharge alerts in `triggers`)
share one shape, built by `coordinator_task`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import text

from fhir_server.engine.engine import Engine
from fhir_server.engine.interaction import Context, Interaction, Kind, Params
from fhir_server.engine.lookup import create_once, read, search, search_page
from fhir_server.engine.unit_of_work import UnitOfWork
from fhir_server.errors import FhirError
from fhir_server.formats.json_format import dumps, loads
from fhir_server.server import Server
from pathways.canonical import (
    BUSINESS_STATUS_SYSTEM,
    COORDINATION_SYSTEM,
    PATHWAY_EXTENSION,
    PATHWAY_SYSTEM,
    ROLE_SYSTEM,
    TASK_IDENTIFIER,
)
from pathways.timing import fhir_datetime

log = logging.getLogger(__name__)

OPEN_STATUSES = ("requested", "received", "accepted", "in-progress")
COORDINATOR = "coordinator"
CONTEXT = Context(source="pathway-deadlines")
# The key of the PostgreSQL advisory lock a scheduled sweep round holds ("cpts" + "dl").
_SWEEP_LOCK = 0x6370_7473_646C


class DeadlineSettings(BaseSettings):
    """The schedule of deadline sweeps (environment variables `FHIR_DEADLINE_SWEEP_*`)."""

    model_config = SettingsConfigDict(env_prefix="FHIR_", extra="ignore")

    deadline_sweep_seconds: float = Field(
        default=300.0,
        description="Seconds between two deadline sweeps of a process running background work "
        "(the API process of the embedded default, or `worker`); 0 turns the sweeps off.",
    )
    deadline_sweep_batch: int = Field(
        default=50,
        description="Late tasks handled per write transaction: on SQLite, other writers wait "
        "for one batch at most (docs/performance.md gives the time per task).",
    )


@dataclass
class SweepCounts:
    """What a sweep did, as counts (never which patients)."""

    late: int = 0  # late open tasks found
    overdue: int = 0  # marked overdue by this sweep
    escalated: int = 0  # escalation tasks created
    conflicts: int = 0  # changed by another writer since they were read (412): left to it
    refused: int = 0  # the update was refused (a hook or profile): logged by kind

    def add(self, other: SweepCounts) -> None:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def install(server: Server) -> None:
    """Sweep deadlines in the background of a server that runs background work."""
    settings = DeadlineSettings()
    if settings.deadline_sweep_seconds > 0:
        server.add_periodic_job(
            "deadline-sweep",
            settings.deadline_sweep_seconds,
            lambda: scheduled_sweep(server, settings.deadline_sweep_batch),
        )


def scheduled_sweep(server: Server, batch: int = 50) -> SweepCounts | None:
    """One round of the schedule: a sweep at the current time, unless another process is
    sweeping (then None)."""
    with exclusive_round(server) as ours:
        if not ours:
            return None
        counts = sweep(server, datetime.now(UTC), batch)
    if counts.late:
        log.info("deadline sweep: %s", counts.as_dict())
    return counts


@contextmanager
def exclusive_round(server: Server) -> Iterator[bool]:
    """Whether this process may sweep now: on PostgreSQL a session advisory lock taken without
    waiting (released at the end, or by PostgreSQL if the process dies); on SQLite always, the
    database lock serialising the batches of concurrent sweeps."""
    if not server.database.is_postgres:
        yield True
        return
    with server.database.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        ours = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _SWEEP_LOCK})
        if not ours.scalar():
            yield False
            return
        try:
            yield True
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _SWEEP_LOCK})


def sweep(server: Server, now: datetime, batch: int = 50) -> SweepCounts:
    """Mark every open pathway task due before `now` overdue and escalate it to the
    coordinator; returns the counts. Safe to run concurrently and to repeat.

    Late tasks are read a page (FHIR_MAX_PAGE_SIZE) at a time in a read-only transaction, then
    handled `batch` at a time, each batch in a write transaction of its own: on SQLite the write
    lock is held for one batch, never while the open tasks are scanned, and a sweep with nothing
    to do writes nothing. A task changed since it was read fails its If-Match and is left to
    whoever changed it."""
    if now.tzinfo is None:
        raise ValueError("the time of a sweep needs a timezone")
    engine = server.engine
    criteria = late_tasks(now, server.settings.max_page_size)
    batch = max(1, batch)
    total = SweepCounts()
    coordinators: dict[str, str | None] = {}

    def read_page(uow: UnitOfWork, page: str | None) -> tuple[list[dict], str | None]:
        tasks, following = search_page(engine, uow, CONTEXT, "Task", criteria, page)
        coordinators.update(_coordinators(engine, uow, tasks))
        return tasks, following

    def escalate(uow: UnitOfWork, chunk: list[dict[str, Any]]) -> SweepCounts:
        done = SweepCounts()  # a retried batch counts afresh
        for task in chunk:
            _escalate_late(engine, uow, task, now, coordinators, done)
        return done

    page: str | None = None
    while True:
        tasks, page = engine.in_transaction(False, CONTEXT, lambda uow, p=page: read_page(uow, p))
        for start in range(0, len(tasks), batch):
            chunk = tasks[start : start + batch]
            total.add(engine.in_transaction(True, CONTEXT, lambda uow, c=chunk: escalate(uow, c)))
        if page is None:
            return total


def late_tasks(now: datetime, batch: int) -> Params:
    """The search for a batch of open pathway tasks due before `now` and not yet overdue, in
    the order they were created (keyset paging on the primary key, no sort to compute)."""
    return [
        ("status", ",".join(OPEN_STATUSES)),
        ("due-date", f"lt{fhir_datetime(now)}"),
        ("business-status:not", f"{BUSINESS_STATUS_SYSTEM}|overdue"),
        ("pathway", f"{PATHWAY_SYSTEM}|"),
        ("_count", str(batch)),
    ]


def _escalate_late(
    engine: Engine,
    uow: UnitOfWork,
    task: dict[str, Any],
    now: datetime,
    coordinators: dict[str, str | None],
    counts: SweepCounts,
) -> None:
    counts.late += 1
    late = copy.deepcopy(task)
    late["businessStatus"] = business_status("overdue")
    try:
        engine.run(
            uow,
            Interaction(
                Kind.UPDATE, "Task", task["id"], resource=late, if_match=task["meta"]["versionId"]
            ),
            CONTEXT,
        )
    except FhirError as exc:  # nothing was written for this task
        if exc.status == 412:
            counts.conflicts += 1
        else:
            counts.refused += 1
            log.warning(
                "deadline sweep: update of a late task refused (%s %s)",
                exc.status,
                ",".join(issue.code for issue in exc.issues),
            )
        return
    counts.overdue += 1
    careplan = reference_of(task.get("basedOn"))
    patient = (task.get("for") or {}).get("reference")
    key = careplan or patient or ""
    if key not in coordinators:
        coordinators[key] = coordinator_of(engine, uow, CONTEXT, careplan, patient)
    escalation = coordinator_task(
        identifier=f"{task_identifier(task)}|escalation",
        pathway=pathway_of(task),
        code="escalation",
        description=f"Étape en retard : {task.get('description') or 'tâche du parcours'}",
        patient=patient,
        owner=coordinators[key],
        careplan=careplan,
        encounter=(task.get("encounter") or {}).get("reference"),
        requester=(task.get("requester") or {}).get("reference"),
        focus=f"Task/{task['id']}",
        status_code="escalated",
        authored=now,
    )
    if create_once(engine, uow, CONTEXT, escalation).created:
        counts.escalated += 1


# -- the coordinator and the tasks addressed to them ------------------------------------------


def coordinator_of(
    engine: Engine, uow: UnitOfWork, ctx: Context, careplan: str | None, patient: str | None
) -> str | None:
    """The member holding the coordinator role in the care teams of a CarePlan, else in the
    patient's active care teams; None when nobody does (the task is then left unassigned)."""
    teams: list[dict[str, Any]] = []
    plan = read(engine, uow, ctx, careplan) if careplan else None
    for ref in (plan or {}).get("careTeam", []):
        team = read(engine, uow, ctx, ref.get("reference"))
        if team is not None:
            teams.append(team)
    if not teams and patient:
        criteria = [("patient", patient), ("status", "active")]
        teams = list(search(engine, uow, ctx, "CareTeam", criteria))
    return coordinator_in(teams)


def coordinator_in(teams: list[dict[str, Any]]) -> str | None:
    """The first member of these care teams whose role is coordinator."""
    for team in teams:
        for participant in team.get("participant", []):
            member = (participant.get("member") or {}).get("reference")
            if member and has_coding(participant.get("role", []), ROLE_SYSTEM, COORDINATOR):
                return member
    return None


def _coordinators(engine: Engine, uow: UnitOfWork, tasks: list[dict]) -> dict[str, str | None]:
    """The coordinator of the CarePlan of each task of a page, found with one search of the
    CarePlans and their care teams (`_include`) rather than two reads per task. CarePlans
    whose care teams did not all come (none, or the include cap) are left to `coordinator_of`."""
    ids = sorted({ref.partition("/")[2] for t in tasks if (ref := reference_of(t.get("basedOn")))})
    if not ids:
        return {}
    criteria = [
        ("_id", ",".join(ids)),
        ("_include", "CarePlan:care-team"),
        ("_count", str(len(ids))),
    ]
    outcome = engine.run(uow, Interaction(Kind.SEARCH_TYPE, "CarePlan", params=criteria), CONTEXT)
    found = {
        f"{entry['resource']['resourceType']}/{entry['resource']['id']}": entry["resource"]
        for entry in loads(dumps(outcome.resource)).get("entry", [])
    }
    coordinators: dict[str, str | None] = {}
    for ref, plan in found.items():
        teams = [found.get(team.get("reference", "")) for team in plan.get("careTeam", [])]
        if ref.startswith("CarePlan/") and teams and all(teams):
            coordinators[ref] = coordinator_in(teams)
    return coordinators


def coordinator_task(
    *,
    identifier: str,
    pathway: str,
    code: str,
    description: str,
    patient: str | None,
    owner: str | None,
    authored: datetime,
    careplan: str | None = None,
    encounter: str | None = None,
    requester: str | None = None,
    focus: str | None = None,
    status_code: str | None = None,
) -> dict[str, Any]:
    """A Task for the pathway coordinator (an escalation, a discharge alert), coded in the
    CodeSystem coordination-task: a pathway Task without deadline, ActivityDefinition nor
    pathway-step extension (it is no step of the definition), so that the sweep never escalates
    it and progression never waits for it; unassigned (`performerType` coordinator) when the
    care team has no coordinator."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "extension": [
            {"url": PATHWAY_EXTENSION, "valueCoding": {"system": PATHWAY_SYSTEM, "code": pathway}}
        ],
        "identifier": [{"system": TASK_IDENTIFIER, "value": identifier}],
        "status": "requested",
        "intent": "order",
        "priority": "urgent",
        "code": {"coding": [{"system": COORDINATION_SYSTEM, "code": code}]},
        "description": description,
        "authoredOn": fhir_datetime(authored),
    }
    if status_code:
        task["businessStatus"] = business_status(status_code)
    references = {
        "focus": focus,
        "for": patient,
        "encounter": encounter,
        "requester": requester,
        "owner": owner,
    }
    task.update({key: {"reference": ref} for key, ref in references.items() if ref})
    if careplan:
        task["basedOn"] = [{"reference": careplan}]
    if owner is None:
        task["performerType"] = [{"coding": [{"system": ROLE_SYSTEM, "code": COORDINATOR}]}]
    return task


def business_status(code: str) -> dict[str, Any]:
    return {"coding": [{"system": BUSINESS_STATUS_SYSTEM, "code": code}]}


def task_identifier(task: dict[str, Any]) -> str:
    """The value of a pathway task's identifier (its id when it has none)."""
    for identifier in task.get("identifier", []):
        if identifier.get("system") == TASK_IDENTIFIER and identifier.get("value"):
            return identifier["value"]
    return f"Task/{task['id']}"


def pathway_of(resource: dict[str, Any]) -> str:
    for extension in resource.get("extension", []):
        if extension.get("url") == PATHWAY_EXTENSION:
            return extension.get("valueCoding", {}).get("code", "")
    return ""


def has_coding(concepts: list[dict[str, Any]], system: str, code: str) -> bool:
    return any(
        coding.get("system") == system and coding.get("code") == code
        for concept in concepts
        for coding in concept.get("coding", [])
    )


def reference_of(references: list[dict[str, Any]] | None) -> str | None:
    """The first literal reference of a list (`basedOn`)."""
    return next((r["reference"] for r in references or [] if r.get("reference")), None)
