"""Latency of the two searches users run most, against a hand-written SQL floor measured in the
same run on the same database:

- the IDEL worklist: `GET /Task?owner=Practitioner/x&status=requested,accepted,in-progress
  &_sort=due-date&_count=50&_include=Task:patient`;
- the INS lookup: `GET /Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|...`.

Each query runs three ways, over many different owners and INS: through HTTP (a
`python -m fhir_server serve` process), through the engine in-process (parsing, SQL, Bundle
serialised to JSON), and as the SQL a person would write by hand for the same rows (the floor:
the database work alone). The query plans of the server's SQL and of the floor are recorded.

    python -m bench.search_latency --database-url sqlite:///... --scale 1m
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import typer
from sqlalchemy import event

from bench.generate import INS, Generator, ins, parse_scale, practitioner_id
from bench.measure import RESULTS, machine, percentiles, start_http, stop
from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.formats.json_format import dumps
from fhir_server.server import Server
from fhir_server.settings import Settings

OPEN = ("requested", "accepted", "in-progress")

WORKLIST_SQL = """
SELECT r.pk, v.body
FROM search_reference o
JOIN resource r ON r.pk = o.resource_pk AND r.deleted = :no
JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
LEFT JOIN search_date d ON d.resource_pk = r.pk AND d.param = 'due-date'
WHERE o.type = 'Task' AND o.param = 'owner' AND o.target_type = 'Practitioner'
  AND o.target_id = :owner
  AND EXISTS (SELECT 1 FROM search_token s WHERE s.resource_pk = r.pk AND s.param = 'status'
              AND s.code IN ('requested', 'accepted', 'in-progress'))
ORDER BY d.low, r.pk
LIMIT 50
"""
INCLUDE_SQL = """
SELECT DISTINCT p2.pk, v.body
FROM search_reference p
JOIN resource p2 ON p2.type = p.target_type AND p2.id = p.target_id AND p2.deleted = :no
JOIN resource_version v ON v.resource_pk = p2.pk AND v.version = p2.version
WHERE p.param = 'patient' AND p.resource_pk IN ({pks})
"""
INS_SQL = """
SELECT v.body
FROM search_token t
JOIN resource r ON r.pk = t.resource_pk AND r.deleted = :no
JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
WHERE t.type = 'Patient' AND t.param = 'identifier' AND t.system = :system AND t.code = :code
"""


def interleaved(
    paths: dict[str, Callable[[Any], Any]], arguments: list[Any]
) -> dict[str, list[float]]:
    """Milliseconds of each path for each argument. The paths take turns being first on an
    argument, so that none always pays (or always escapes) the cold-cache reads of the rows
    that argument touches; every path is run once before measuring."""
    for run in paths.values():
        run(arguments[0])
    samples: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for index, argument in enumerate(arguments):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            paths[name](argument)
            samples[name].append((time.perf_counter() - start) * 1000)
    return samples


def worklist_params(owner: str) -> list[tuple[str, str]]:
    return [
        ("owner", f"Practitioner/{owner}"),
        ("status", ",".join(OPEN)),
        ("_sort", "due-date"),
        ("_count", "50"),
        ("_include", "Task:patient"),
    ]


def explain(server: Server, sql: str, params: dict[str, Any]) -> list[str]:
    prefix = (
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) "
        if server.database.is_postgres
        else "EXPLAIN QUERY PLAN "
    )
    with server.database.transaction(write=False) as conn:
        rows = conn.exec_driver_sql(prefix + sql, params).fetchall()
    return [" | ".join(str(c) for c in row) for row in rows]


def capture_sql(server: Server, run: Callable[[], Any]) -> tuple[str, Any]:
    """The first page select the engine runs for `run()` (the search itself)."""
    captured: list[tuple[str, Any]] = []

    def listen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith(("SELECT page.pk", "SELECT resource.pk")):
            captured.append((statement, parameters))

    event.listen(server.database.engine, "before_cursor_execute", listen)
    try:
        run()
    finally:
        event.remove(server.database.engine, "before_cursor_execute", listen)
    return captured[0]


def run_benchmark(database_url: str, scale_text: str, requests: int, seed: int) -> dict:
    scale = parse_scale(scale_text)
    server = Server(
        Settings(database_url=database_url, migrate_on_start=False),
        load_plugins=False,
        load_conformance=False,
    )
    generator = Generator(scale)
    nurses = [practitioner_id(n) for n in generator.by_role["idel"]]
    rng = random.Random(seed)
    owners = [rng.choice(nurses) for _ in range(requests)]
    patients = [ins(rng.randrange(scale.patients)) for _ in range(requests)]
    context = Context(base_url="http://bench")
    no = {"no": False}

    def engine_worklist(owner: str) -> bytes:
        outcome = server.engine.execute(
            Interaction(Kind.SEARCH_TYPE, "Task", params=worklist_params(owner)), context
        )
        return dumps(outcome.resource)

    def engine_ins(code: str) -> bytes:
        outcome = server.engine.execute(
            Interaction(Kind.SEARCH_TYPE, "Patient", params=[("identifier", f"{INS}|{code}")]),
            context,
        )
        return dumps(outcome.resource)

    def sql_worklist(owner: str) -> None:
        with server.database.transaction(write=False) as conn:
            tasks = conn.exec_driver_sql(
                WORKLIST_SQL.replace(":owner", "%(owner)s").replace(":no", "%(no)s")
                if server.database.is_postgres
                else WORKLIST_SQL,
                {"owner": owner, **no},
            ).fetchall()
            if tasks:
                marks = ",".join(str(pk) for pk, _ in tasks)
                sql = INCLUDE_SQL.format(pks=marks)
                conn.exec_driver_sql(
                    sql.replace(":no", "%(no)s") if server.database.is_postgres else sql, no
                ).fetchall()

    def sql_ins(code: str) -> None:
        params = {"system": INS, "code": code, **no}
        sql = INS_SQL
        if server.database.is_postgres:
            sql = (
                sql.replace(":system", "%(system)s")
                .replace(":code", "%(code)s")
                .replace(":no", "%(no)s")
            )
        with server.database.transaction(write=False) as conn:
            conn.exec_driver_sql(sql, params).fetchall()

    process, base = start_http(database_url)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:

            def http_worklist(owner: str) -> None:
                client.get("/Task", params=worklist_params(owner)).raise_for_status()

            def http_ins(code: str) -> None:
                client.get("/Patient", params={"identifier": f"{INS}|{code}"}).raise_for_status()

            worklist = interleaved(
                {
                    "worklist_sql_floor": sql_worklist,
                    "worklist_engine": engine_worklist,
                    "worklist_http": http_worklist,
                },
                owners,
            )
            lookup = interleaved(
                {"ins_sql_floor": sql_ins, "ins_engine": engine_ins, "ins_http": http_ins}, patients
            )
    finally:
        stop(process)
    results: dict[str, Any] = {
        name: percentiles(samples) for name, samples in {**worklist, **lookup}.items()
    }
    example = engine_worklist(owners[0])

    worklist_sql, worklist_args = capture_sql(server, lambda: engine_worklist(owners[0]))
    ins_sql, ins_args = capture_sql(server, lambda: engine_ins(patients[0]))
    with server.database.transaction(write=False) as conn:
        counts = dict(
            conn.exec_driver_sql("SELECT type, count(*) FROM resource GROUP BY type").fetchall()
        )
    bundle = json.loads(example)
    floor_worklist = WORKLIST_SQL.replace(":owner", f"'{owners[0]}'").replace(":no", "false")
    floor_ins = (
        INS_SQL.replace(":system", f"'{INS}'")
        .replace(":code", f"'{patients[0]}'")
        .replace(":no", "false")
    )
    report = {
        "database": server.database.dialect,
        "scale": scale_text,
        "resources": sum(counts.values()),
        "resources_by_type": counts,
        **machine(),
        "requests": requests,
        "latency_ms": results,
        "ratios_p95": {
            "worklist_engine_vs_sql": round(
                results["worklist_engine"]["p95"] / results["worklist_sql_floor"]["p95"], 2
            ),
            "worklist_http_vs_sql": round(
                results["worklist_http"]["p95"] / results["worklist_sql_floor"]["p95"], 2
            ),
            "ins_engine_vs_sql": round(
                results["ins_engine"]["p95"] / results["ins_sql_floor"]["p95"], 2
            ),
            "ins_http_vs_sql": round(
                results["ins_http"]["p95"] / results["ins_sql_floor"]["p95"], 2
            ),
        },
        "example_worklist": {
            "matches": sum(1 for e in bundle["entry"] if e["search"]["mode"] == "match"),
            "included": sum(1 for e in bundle["entry"] if e["search"]["mode"] == "include"),
        },
        "plans": {
            "worklist_server_sql": worklist_sql,
            "worklist_server_plan": explain(server, worklist_sql, worklist_args),
            "worklist_floor_plan": explain(server, floor_worklist, {}),
            "ins_server_sql": ins_sql,
            "ins_server_plan": explain(server, ins_sql, ins_args),
            "ins_floor_plan": explain(server, floor_ins, {}),
        },
    }
    server.close()
    return report


def main(
    database_url: str = typer.Option(..., help="A database loaded by bench.load."),
    scale: str = typer.Option(..., help="The scale it was loaded with (1k, 100k, 1m)."),
    requests: int = typer.Option(300, help="Queries per measurement."),
    seed: int = typer.Option(7),
) -> None:
    report = run_benchmark(database_url, scale, requests, seed)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"search-{report['database']}-{scale}.json"
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n")
    typer.echo(json.dumps({k: report[k] for k in ("database", "resources", "ratios_p95")}))
    typer.echo(json.dumps(report["latency_ms"], indent=1))
    typer.echo(f"written {path}")


if __name__ == "__main__":
    typer.run(main)
