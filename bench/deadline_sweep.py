"""The cost of a deadline sweep over 100,000 open pathway tasks, a tenth of them late, against a
floor measured in the same run on the same database.

The CPTS: 10,000 patients in a pathway, each with a care team (a coordinator for nine in ten),
a CarePlan, ten open tasks (requested, received, accepted, in progress) and two completed
ones, in the contract's shape (docs/pathways.md), loaded through the engine. The sweep runs at
a fixed `now` with every plugin installed, as a worker runs it: each late task is updated with
If-Match and gets an escalation task (a conditional create), a batch per transaction.

The floor is the least any implementation must do for the same effect: the hand-written SQL
selecting the late tasks (one query, the database work alone), then as many plain updates and
plain creates through the engine, in transactions of the same size (no search, no If-Match, no
conditional create, no coordinator lookup). A second sweep, with nothing left to do, gives the
steady cost of the schedule (every 5 minutes by default).

    python -m bench.deadline_sweep --database-url sqlite:///bench/data/sweep.db
    python -m bench.deadline_sweep --database-url postgresql+psycopg://.../sweep

The database must be empty: a sweep changes what it measures.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import typer
from sqlalchemy import and_, exists, false, func, select

from bench.measure import RESULTS, machine
from bench.search_latency import capture_sql, explain
from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.engine.lookup import search_page
from fhir_server.engine.unit_of_work import UnitOfWork
from fhir_server.formats.json_format import loads
from fhir_server.server import Server
from fhir_server.settings import Settings
from fhir_server.storage.schema import DateIndex, OutboxRow, ResourceRow, TokenIndex, VersionRow
from pathways.canonical import (
    BASE,
    BUSINESS_STATUS_SYSTEM,
    PATHWAY_EXTENSION,
    PATHWAY_SYSTEM,
    ROLE_SYSTEM,
    STEP_EXTENSION,
    TASK_IDENTIFIER,
)
from pathways.deadlines import CONTEXT, OPEN_STATUSES, late_tasks, sweep
from pathways.timing import PARIS, fhir_datetime

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=PARIS)
PATHWAYS = ["heart-failure", "hospital-discharge", "osteoporosis", "neurodevelopment"]
ROLES = ["gp", "idel", "pharmacist", "idel", "cardiologist"]
LOAD = Context(source="bench-load")
FLOOR = Context(source="bench-floor")


class Cpts:
    """The generated CPTS, deterministic for a seed."""

    def __init__(self, patients: int, late_share: float, seed: int) -> None:
        self.patients = patients
        self.late_share = late_share
        self.random = random.Random(seed)

    def resources(self) -> Iterator[dict[str, Any]]:
        for n in range(self.patients):
            yield from self.record(n)

    def record(self, n: int) -> Iterator[dict[str, Any]]:
        r = self.random
        subject = {"reference": f"Patient/pat-{n:06d}"}
        yield {
            "resourceType": "Patient",
            "id": f"pat-{n:06d}",
            "name": [{"family": f"Patient{n}", "given": ["Anne"]}],
            "gender": "female",
            "birthDate": f"{r.randint(1930, 1970)}-0{r.randint(1, 9)}-1{r.randint(0, 9)}",
        }
        team = {role: f"Practitioner/{role}-{r.randrange(200):03d}" for role in set(ROLES)}
        if r.random() < 0.9:
            team["coordinator"] = f"Practitioner/coordinator-{r.randrange(3)}"
        yield {
            "resourceType": "CareTeam",
            "id": f"team-{n:06d}",
            "status": "active",
            "subject": subject,
            "participant": [
                {
                    "role": [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}],
                    "member": {"reference": member},
                }
                for role, member in team.items()
            ],
        }
        pathway = PATHWAYS[n % len(PATHWAYS)]
        coding = {"system": PATHWAY_SYSTEM, "code": pathway}
        key = f"{pathway}|pat-{n:06d}|enc-{n:06d}"
        plan_id = f"plan-{n:06d}"
        yield {
            "resourceType": "CarePlan",
            "id": plan_id,
            "extension": [{"url": PATHWAY_EXTENSION, "valueCoding": coding}],
            "identifier": [{"system": f"{BASE}/sid/pathway-careplan", "value": key}],
            "status": "active",
            "intent": "plan",
            "category": [{"coding": [coding]}],
            "subject": subject,
            "careTeam": [{"reference": f"CareTeam/team-{n:06d}"}],
        }
        for k in range(12):
            closed = k >= 10
            if closed or r.random() < self.late_share:
                due = NOW - timedelta(days=r.randint(1, 45), hours=r.randint(0, 23))
            else:
                due = NOW + timedelta(days=r.randint(0, 180), hours=r.randint(1, 23))
            role = ROLES[k % len(ROLES)]
            status = "completed" if closed else r.choice(OPEN_STATUSES)
            yield {
                "resourceType": "Task",
                "id": f"task-{n:06d}-{k:02d}",
                "extension": [
                    {"url": PATHWAY_EXTENSION, "valueCoding": coding},
                    {
                        "url": STEP_EXTENSION,
                        "extension": [
                            {"url": "dueWithin", "valueDuration": _days(7)},
                            {"url": "required", "valueBoolean": True},
                            {"url": "occurrence", "valueInteger": k + 1},
                        ],
                    },
                ],
                "identifier": [{"system": TASK_IDENTIFIER, "value": f"{key}|step-{k}|1"}],
                "instantiatesCanonical": f"{BASE}/ActivityDefinition/{pathway}-step-{k}",
                "basedOn": [{"reference": f"CarePlan/{plan_id}"}],
                "status": status,
                "intent": "order",
                "priority": "routine",
                "description": f"Étape {k + 1}",
                "for": subject,
                "authoredOn": fhir_datetime(due - timedelta(days=7)),
                "owner": {"reference": team[role]},
                "restriction": {
                    "period": {
                        "start": fhir_datetime(due - timedelta(days=7)),
                        "end": fhir_datetime(due),
                    }
                },
                **({"executionPeriod": {"end": fhir_datetime(due)}} if closed else {}),
            }


def _days(value: int) -> dict[str, Any]:
    return {"value": value, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}


def _in_batches(
    server: Server, items: list[Any], batch: int, write: Callable[[UnitOfWork, Any], None]
) -> None:
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]

        def work(uow: UnitOfWork, chunk: list[Any] = chunk) -> None:
            for item in chunk:
                write(uow, item)

        server.engine.in_transaction(True, FLOOR, work)


def load(server: Server, cpts: Cpts, batch: int = 1000) -> dict[str, Any]:
    started = time.perf_counter()
    resources = list(cpts.resources())

    def create(uow: UnitOfWork, resource: dict[str, Any]) -> None:
        server.engine.run(
            uow,
            Interaction(Kind.CREATE, resource["resourceType"], resource["id"], resource=resource),
            LOAD,
        )

    _in_batches(server, resources, batch, create)
    seconds = time.perf_counter() - started
    return {"resources": len(resources), "seconds": round(seconds, 1)}


def settle(server: Server) -> None:
    """Planner statistics, as a production database has them (autovacuum on PostgreSQL; the
    server does not gather them on SQLite yet: docs/performance.md says what that costs), and
    on PostgreSQL the vacuum autovacuum would otherwise run in the middle of the measures."""
    if not server.database.is_postgres:
        with server.database.transaction(write=True) as conn:
            conn.exec_driver_sql("ANALYZE")
        return
    with server.database.engine.connect() as conn:  # VACUUM runs outside a transaction
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")


def late_sql(now: datetime) -> Any:
    """The late open pathway tasks not yet overdue, as a person would write it."""
    r, v = ResourceRow.__table__, VersionRow.__table__
    token, date = TokenIndex.__table__, DateIndex.__table__

    def has(table: Any, param: str, *conditions: Any) -> Any:
        return exists().where(
            table.c.resource_pk == r.c.pk,
            table.c.type == "Task",
            table.c.param == param,
            *conditions,
        )

    status, pathway, overdue = token.alias(), token.alias(), token.alias()
    return (
        select(r.c.id, r.c.version, v.c.body)
        .select_from(r.join(v, and_(v.c.resource_pk == r.c.pk, v.c.version == r.c.version)))
        .where(
            r.c.type == "Task",
            r.c.deleted == false(),
            has(status, "status", status.c.code.in_(OPEN_STATUSES)),
            has(date, "due-date", date.c.low < now),
            has(pathway, "pathway", pathway.c.system == PATHWAY_SYSTEM),
            ~has(
                overdue,
                "business-status",
                overdue.c.system == BUSINESS_STATUS_SYSTEM,
                overdue.c.code == "overdue",
            ),
        )
        .order_by(r.c.pk)
    )


def floor(server: Server, batch: int) -> dict[str, Any]:
    """Select the late tasks by hand, then as many plain updates and creates as the sweep
    writes, through the engine, `batch` tasks per transaction."""
    started = time.perf_counter()
    with server.database.transaction(write=False) as conn:
        rows = conn.execute(late_sql(NOW)).all()
    selected = time.perf_counter()
    tasks = [loads(body) for _, _, body in rows]

    def write(uow: UnitOfWork, task: dict[str, Any]) -> None:
        changed = copy.deepcopy(task)
        changed["note"] = [{"text": "floor"}]
        server.engine.run(
            uow, Interaction(Kind.UPDATE, "Task", task["id"], resource=changed), FLOOR
        )
        plain = {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "focus": {"reference": f"Task/{task['id']}"},
            "for": task["for"],
        }
        server.engine.run(uow, Interaction(Kind.CREATE, "Task", resource=plain), FLOOR)

    _in_batches(server, tasks, batch, write)
    done = time.perf_counter()
    return {
        "late": len(rows),
        "select_ms": round((selected - started) * 1000, 1),
        "writes_s": round(done - selected, 2),
        "total_s": round(done - started, 2),
    }


def _outbox_rows(server: Server) -> int:
    with server.database.transaction(write=False) as conn:
        return conn.execute(select(func.count()).select_from(OutboxRow.__table__)).scalar_one()


def run_benchmark(
    database_url: str, patients: int, late_share: float, batch: int, seed: int
) -> dict:
    settings = Settings(database_url=database_url)
    loader = Server(settings, load_plugins=False, load_conformance=False)
    with loader.database.transaction(write=False) as conn:
        if conn.execute(select(func.count()).select_from(ResourceRow.__table__)).scalar_one():
            raise typer.BadParameter(f"{database_url} is not empty: a sweep changes its data")
    loaded = load(loader, Cpts(patients, late_share, seed))
    settle(loader)
    loader.close()

    server = Server(settings, load_conformance=False)  # every plugin, as in a worker
    with server.database.transaction(write=False) as conn:
        open_tasks = conn.execute(
            select(func.count())
            .select_from(TokenIndex.__table__)
            .where(
                TokenIndex.__table__.c.type == "Task",
                TokenIndex.__table__.c.param == "status",
                TokenIndex.__table__.c.code.in_(OPEN_STATUSES),
            )
        ).scalar_one()
    floor_figures = floor(server, batch)
    outbox_before = _outbox_rows(server)
    started = time.perf_counter()
    counts = sweep(server, NOW, batch)
    sweep_s = time.perf_counter() - started
    outbox_rows = _outbox_rows(server) - outbox_before
    started = time.perf_counter()
    idle = sweep(server, NOW, batch)
    idle_s = time.perf_counter() - started

    def first_page() -> None:
        server.engine.in_transaction(
            False,
            CONTEXT,
            lambda uow: search_page(
                server.engine, uow, CONTEXT, "Task", late_tasks(NOW, batch), None
            ),
        )

    sql, args = capture_sql(server, first_page)
    batches = -(-counts.late // batch) if counts.late else 0
    report = {
        "database": server.database.dialect,
        **machine(),
        "patients": patients,
        "open_tasks": open_tasks,
        "late_share": late_share,
        "batch": batch,
        "statistics": "VACUUM ANALYZE after loading"
        if server.database.is_postgres
        else "ANALYZE after loading",
        "load": loaded,
        "floor": floor_figures,
        "sweep": {
            "counts": counts.as_dict(),
            "seconds": round(sweep_s, 2),
            "late_per_second": round(counts.late / sweep_s, 1) if sweep_s else None,
            "batches": batches,
            "mean_batch_ms": round(sweep_s * 1000 / batches, 1) if batches else None,
            "outbox_rows_written": outbox_rows,
        },
        "idle_sweep": {"counts": idle.as_dict(), "seconds": round(idle_s, 2)},
        "ratio_sweep_vs_floor": round(sweep_s / floor_figures["total_s"], 2),
        "plans": {"sweep_page_sql": sql, "sweep_page_plan": explain(server, sql, args)},
    }
    server.close()
    return report


def main(
    database_url: str = typer.Option(..., help="An empty database (SQLite file or PostgreSQL)."),
    patients: int = typer.Option(10_000, help="Patients: ten open tasks each."),
    late_share: float = typer.Option(0.1, help="Share of the open tasks that are late."),
    batch: int = typer.Option(50, help="Late tasks per transaction."),
    seed: int = typer.Option(5),
) -> None:
    report = run_benchmark(database_url, patients, late_share, batch, seed)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"deadline-sweep-{report['database']}.json"
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n")
    summary = {k: report[k] for k in ("database", "open_tasks", "floor", "sweep", "idle_sweep")}
    typer.echo(json.dumps(summary, indent=1))
    typer.echo(f"written {path}")


if __name__ == "__main__":
    typer.run(main)
