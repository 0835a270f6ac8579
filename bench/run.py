"""One command for every benchmark: load a CPTS at a scale (once: the loaded database is kept),
run each scenario against its floor on a fresh copy of it (`<name>-run.db`, `<name>_run`) on
SQLite and, given a URL, PostgreSQL, write `bench/results/*.json` and the tables of
docs/performance.md.

    python -m bench.run --scale 100k --postgres-url postgresql+psycopg://.../bench100k
    python -m bench.run --quick            # 1k resources, small samples: under 2 minutes
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench import (
    crud,
    deadline_sweep,
    hl7v2_ingest,
    pathway_apply,
    report,
    search_latency,
    security_overhead,
)
from bench.generate import parse_scale
from bench.load import load
from bench.measure import RESULTS
from fhir_server.server import Server
from fhir_server.settings import Settings

DATA = Path(__file__).parent / "data"


def prepare(database_url: str, scale: str) -> dict[str, Any] | None:
    """Load the CPTS unless the database already holds it (its patients are there: the
    benchmarks only add to them); returns the load figures, or None when it was there. A
    database holding other patients is refused."""
    server = Server(Settings(database_url=database_url), load_plugins=False)
    try:
        with server.database.transaction(write=False) as conn:
            patients = conn.execute(
                text("SELECT count(*) FROM resource WHERE type = 'Patient'")
            ).scalar()
        wanted = parse_scale(scale).patients
        if patients >= wanted:
            return None
        if patients:
            raise typer.BadParameter(
                f"{database_url} holds {patients:,} patients, not a {scale} CPTS: use an empty one"
            )
        return load(server, parse_scale(scale))
    finally:
        server.close()


def beside(url: str, suffix: str, copy: bool = False) -> str:
    """A database of its own beside `url`, made again at each call: `<name>-<suffix>.db` on
    SQLite, `<name>_<suffix>` on PostgreSQL (the user of the URL creates it), empty or a copy
    of `url`'s."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database).with_name(f"{Path(parsed.database).stem}-{suffix}.db")
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        if copy:
            # The backup API copies a consistent snapshot, the WAL's pages included.
            source = sqlite3.connect(parsed.database)
            with closing(source), closing(sqlite3.connect(path)) as target:
                source.backup(target)
        return f"sqlite:///{path}"
    name = f"{parsed.database}_{suffix}"
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        copied = f' TEMPLATE "{parsed.database}"' if copy else ""
        conn.execute(text(f'CREATE DATABASE "{name}"{copied}'))
    admin.dispose()
    return parsed.set(database=name).render_as_string(hide_password=False)


def working_copy(url: str) -> str:
    """A copy of the loaded CPTS for one run, made again at each run. The benchmarks add to
    the database they run on (patients, observations, audit events): run after run on the
    same one, a 100k CPTS grew past half a million resources, and each run measured a larger
    database than the one before."""
    return beside(url, "run", copy=True)


def empty_database(url: str) -> str:
    """A fresh database for the benchmarks that need an empty one (HL7 v2 ingest, deadline
    sweep)."""
    return beside(url, "side")


def _write(folder: Path, name: str, result: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str) + "\n")


def main(
    scale: str = typer.Option("100k", help="1k, 100k, 1m: resources in the CPTS."),
    postgres_url: str = typer.Option(
        None,
        help="An empty PostgreSQL database to load (kept for the next run; each run works on "
        "a copy, <name>_run, made by CREATE DATABASE ... TEMPLATE).",
    ),
    data_dir: Path = typer.Option(DATA, help="Where the SQLite databases are kept."),
    quick: bool = typer.Option(False, help="1k resources and small samples (under 2 minutes)."),
    concurrency: int = typer.Option(8, help="Requests in flight for the throughput scenarios."),
    only: list[str] = typer.Option(
        None,
        help="Run only these scenarios (search, crud, pathway-apply, security-overhead, "
        "hl7v2-ingest, deadline-sweep); the last two run on a database of their own, whatever "
        "the scale.",
    ),
) -> None:
    if quick:
        scale = "1k"
    count, queries, applies, messages, patients = (
        (300, 100, 30, 200, 200) if quick else (2000, 300, 200, 2000, 10_000)
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    databases = {"sqlite": f"sqlite:///{data_dir / f'{scale}.db'}"}
    if postgres_url:
        databases["postgresql"] = postgres_url
    steps: dict[str, Callable[[str], dict[str, Any]]] = {
        "search": lambda url: search_latency.run_benchmark(url, scale, queries, seed=7),
        "crud": lambda url: crud.run_benchmark(url, scale, count, concurrency, seed=11),
        "pathway-apply": lambda url: pathway_apply.run_benchmark(url, applies),
        "security-overhead": lambda url: security_overhead.run_benchmark(
            url, scale, count // 2, concurrency, seed=13
        ),
        "hl7v2-ingest": lambda url: hl7v2_ingest.run_benchmark(empty_database(url), messages),
        "deadline-sweep": lambda url: deadline_sweep.run_benchmark(
            empty_database(url), patients, late_share=0.1, batch=50, seed=5
        ),
    }
    # Quick runs are for everyday checks: their figures stay out of the published results.
    folder = RESULTS / "quick" if quick else RESULTS
    for database, url in databases.items():
        started = time.perf_counter()
        loaded = prepare(url, scale)
        if loaded:
            typer.echo(f"{database}: loaded {loaded}")
        run_url = working_copy(url)
        for name, step in steps.items():
            if only and name not in only:
                continue
            typer.echo(f"{database}: {name}...")
            _write(folder, f"{name}-{database}-{scale}.json", step(run_url))
        typer.echo(f"{database}: done in {time.perf_counter() - started:.0f} s")
    if quick:
        tables = (report.crud_table, report.scenarios_table, report.security_table)
        typer.echo("\n\n".join(table(folder) for table in tables))
        return
    report.PAGE.write_text(report.render(report.PAGE.read_text()))
    typer.echo(f"results in {RESULTS}, tables in {report.PAGE}")


if __name__ == "__main__":
    typer.run(main)
