"""Progression of a pathway: when a step is completed, the steps waiting for it are released
and, once every required step is done, the CarePlan is completed.

An outbox consumer (`pathway-progression`) reads each committed Task version. When a version is
`completed` and the one before it was not, the `draft` Tasks of the same CarePlan that depend
on it (`dependsOn` of the pathway-step extension) and whose other predecessors are completed
too become `requested`, anchored at the completion of their last predecessor (plus `offset`)
and due `dueWithin` of that anchor; when every required Task of the CarePlan is completed, the
CarePlan becomes `completed`. Everything is written through the engine in the unit of work that
marks the event done, so the lifecycle hook, validation, history and the outbox apply, and a
failure leaves the event to be retried. Each Task carries its own rules (the pathway-step
extension): the definition is never read again. docs/pathways.md, "Progression".
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from fhir_server.engine.engine import Engine
from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.engine.unit_of_work import UnitOfWork
from fhir_server.formats.json_format import loads
from fhir_server.outbox import OutboxEvent
from fhir_server.search.normalize import date_range
from fhir_server.server import Server
from pathways.canonical import STEP_EXTENSION
from pathways.lifecycle import ENTERED_IN_ERROR
from pathways.timing import PARIS, due_date, fhir_datetime

NAME = "pathway-progression"
# More Tasks than any CarePlan holds (the longest pathway has a few dozen occurrences).
MAX_TASKS = 1000
# CarePlans progression leaves alone: void ones (a completed one still releases optional steps).
VOIDED_CAREPLANS = frozenset({"revoked", "entered-in-error"})


def step(task: dict[str, Any]) -> dict[str, list[Any]]:
    """The pathway-step extension of a Task as {sub-extension url: [values]}."""
    found: dict[str, list[Any]] = {}
    for extension in task.get("extension", []):
        if extension.get("url") != STEP_EXTENSION:
            continue
        for part in extension.get("extension", []):
            value = next((v for k, v in part.items() if k.startswith("value")), None)
            found.setdefault(part.get("url"), []).append(value)
    return found


def reference_id(reference: dict[str, Any] | None, type_: str) -> str | None:
    """The id of a literal reference to `type_` (`Task/1`, or an absolute URL ending so)."""
    parts = ((reference or {}).get("reference") or "").split("/")
    if len(parts) >= 2 and parts[-2] == type_:
        return parts[-1]
    if len(parts) >= 4 and parts[-4] == type_ and parts[-2] == "_history":
        return parts[-3]
    return None


def depends_on(task: dict[str, Any]) -> list[str]:
    return [
        id_
        for reference in step(task).get("dependsOn", [])
        if (id_ := reference_id(reference, "Task")) is not None
    ]


def is_required(task: dict[str, Any]) -> bool:
    return step(task).get("required", [False])[0] is True


def completed_at(task: dict[str, Any]) -> datetime:
    """When a completed task was completed: `executionPeriod.end` (stamped by the lifecycle
    hook), else the time its version was stored."""
    text = (task.get("executionPeriod") or {}).get("end") or task["meta"]["lastUpdated"]
    return date_range(text, PARIS)[0]


class Progression:
    """The `pathway-progression` outbox consumer."""

    name = NAME
    resource_types = frozenset({"Task"})

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def handle(self, event: OutboxEvent, uow: UnitOfWork, context: Context) -> None:
        if event.resource_type != "Task" or event.interaction == "delete":
            return
        task = self.version(uow, "Task", event.resource_id, event.version)
        if task is None or task.get("status") != "completed":
            return
        before = self.version(uow, "Task", event.resource_id, event.version - 1)
        if before is not None and before.get("status") == "completed":
            return  # an edit of a task completed earlier
        careplan_id = next(
            (
                id_
                for reference in task.get("basedOn", [])
                if (id_ := reference_id(reference, "CarePlan")) is not None
            ),
            None,
        )
        if careplan_id is None:
            return
        # One progression at a time per CarePlan: two predecessors completed together are
        # handled one after the other, the second seeing what the first released.
        uow.repository.current("CarePlan", careplan_id, for_update=True)
        careplan = self.current(uow, "CarePlan", careplan_id)
        if careplan is None or careplan.get("status") in VOIDED_CAREPLANS:
            return
        tasks = self.tasks_of(uow, careplan_id)
        # A completed plan still releases the optional steps waiting for this task: its last
        # required step may have been handled first in the same dispatch round.
        self.release(uow, context, event.resource_id, tasks)
        if careplan.get("status") != "completed":
            self.complete(uow, context, careplan, tasks)

    def release(
        self, uow: UnitOfWork, context: Context, done_id: str, tasks: dict[str, dict[str, Any]]
    ) -> None:
        """`draft` dependents of the completed task whose predecessors are all completed
        become `requested`, anchored on the last completion and due `dueWithin` after."""
        for task in list(tasks.values()):
            predecessors = depends_on(task)
            if task.get("status") != "draft" or done_id not in predecessors:
                continue
            done = [self.task(uow, tasks, id_) for id_ in predecessors]
            if not all(p is not None and p.get("status") == "completed" for p in done):
                continue
            rules = step(task)
            start = max(completed_at(p) for p in done if p is not None)
            for offset in rules.get("offset", [])[:1]:
                start = due_date(start, offset)  # as $apply anchors the provisional dates
            released = copy.deepcopy(task)
            released["status"] = "requested"
            period = released.setdefault("restriction", {}).setdefault("period", {})
            period["start"] = fhir_datetime(start)
            for within in rules.get("dueWithin", [])[:1]:
                period["end"] = fhir_datetime(due_date(start, within))
            tasks[task["id"]] = self.write(uow, context, "Task", task, released)

    def complete(
        self,
        uow: UnitOfWork,
        context: Context,
        careplan: dict[str, Any],
        tasks: dict[str, dict[str, Any]],
    ) -> None:
        """The CarePlan is completed when its last required task is, at that task's time."""
        required = [
            t for t in tasks.values() if is_required(t) and t.get("status") != ENTERED_IN_ERROR
        ]
        if not required or any(t.get("status") != "completed" for t in required):
            return
        finished = copy.deepcopy(careplan)
        finished["status"] = "completed"
        last = max(completed_at(t) for t in required)
        finished.setdefault("period", {})["end"] = fhir_datetime(last)
        self.write(uow, context, "CarePlan", careplan, finished)

    # -- reads and writes ------------------------------------------------------------------------

    def tasks_of(self, uow: UnitOfWork, careplan_id: str) -> dict[str, dict[str, Any]]:
        ids = self.engine.search.match(
            uow, "Task", [("based-on", f"CarePlan/{careplan_id}")], MAX_TASKS
        )
        found = {id_: self.current(uow, "Task", id_) for id_ in ids}
        return {id_: task for id_, task in found.items() if task is not None}

    def task(
        self, uow: UnitOfWork, tasks: dict[str, dict[str, Any]], id_: str
    ) -> dict[str, Any] | None:
        """A predecessor: one of the CarePlan's tasks, or read (a task of another plan)."""
        return tasks[id_] if id_ in tasks else self.current(uow, "Task", id_)

    def version(self, uow: UnitOfWork, type_: str, id_: str, version: int) -> dict[str, Any] | None:
        stored = uow.repository.read_version(type_, id_, version) if version > 0 else None
        return loads(stored.body) if stored is not None and stored.body else None

    def current(self, uow: UnitOfWork, type_: str, id_: str) -> dict[str, Any] | None:
        stored = uow.repository.read(type_, id_)
        return loads(stored.body) if stored is not None and stored.body else None

    def write(
        self,
        uow: UnitOfWork,
        context: Context,
        type_: str,
        before: dict[str, Any],
        after: dict[str, Any],
    ) -> dict[str, Any]:
        """Update through the engine, on the version read (a concurrent change is a 412 and
        the event is retried); returns the stored content."""
        outcome = self.engine.run(
            uow,
            Interaction(
                Kind.UPDATE,
                type_,
                before["id"],
                resource=after,
                if_match=before["meta"]["versionId"],
                method="PUT",
            ),
            context,
        )
        return loads(outcome.body)


def install(server: Server) -> None:
    server.add_outbox_consumer(Progression(server.engine))
