"""CRUD throughput against its floor, measured in the same run on the same database: create,
read by id, update, a 10-entry transaction and a mixed workload, sent by the same load driver
to the FHIR server (`python -m fhir_server serve`, one worker) and to the floor
(`bench.floor`: HTTP, JSON and one statement per resource, nothing else).

    python -m bench.crud --database-url sqlite:///bench/data/100k.db --scale 100k

The database must hold a CPTS loaded by `bench.load` at that scale: reads and updates go to
its patients, transactions add observations to them.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import sys
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import typer

from bench.driver import Call, drive
from bench.floor import Floor
from bench.generate import Generator, parse_scale, patient_id
from bench.measure import (
    RESULTS,
    machine,
    peak_memory_mb,
    settle,
    start_http,
    start_process,
    stop,
)

# Goals of the project (docs/performance.md): throughput as a share of the floor's.
GOALS = {"create": 0.5, "update": 0.5, "read": 0.7, "transaction": 0.3}


def _new_patient(generator: Generator, n: int) -> dict[str, Any]:
    patient = next(generator.patient_record(n))
    del patient["id"]
    return patient


def _observations(generator: Generator, n: int) -> bytes:
    """A transaction Bundle of the ten observations (weight, blood pressure...) an IDEL records
    for patient `n` in one visit, created together."""
    entries = []
    for resource in generator.patient_record(n):
        if resource["resourceType"] == "Observation":
            del resource["id"]
            entries.append(
                {"resource": resource, "request": {"method": "POST", "url": "Observation"}}
            )
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def workload(
    scale_text: str, count: int, seed: int, stored: Callable[[str], dict[str, Any]]
) -> dict[str, list[Call]]:
    """The calls of each scenario, the same for the server and the floor. An update PUTs the
    patient as `stored` gives it (the server's copy) with a new phone number, as a client
    changes one field of what it read."""
    scale = parse_scale(scale_text)
    generator = Generator(scale, seed=seed)
    rng = random.Random(seed)
    pool = rng.sample(range(scale.patients), min(count, scale.patients))
    fresh = iter(range(scale.patients, scale.patients + 10 * count))

    def create() -> Call:
        return Call("POST", "/Patient", orjson.dumps(_new_patient(generator, next(fresh))), 201)

    def read() -> Call:
        return Call("GET", f"/Patient/{patient_id(rng.choice(pool))}")

    updates = itertools.cycle(pool)

    def update() -> Call:
        path = f"/Patient/{patient_id(next(updates))}"
        patient = stored(path)
        del patient["meta"]
        patient["telecom"] = [{"system": "phone", "value": f"06{rng.randrange(10**8):08d}"}]
        return Call("PUT", path, orjson.dumps(patient))

    def transaction() -> Call:
        return Call("POST", "/", _observations(generator, rng.choice(pool)))

    mix: list[tuple[float, Callable[[], Call]]] = [(0.7, read), (0.85, update), (1.0, create)]

    def mixed() -> Call:
        draw = rng.random()
        return next(make for bound, make in mix if draw < bound)()

    return {
        "create": [create() for _ in range(count)],
        "read": [read() for _ in range(count)],
        "update": [update() for _ in range(count)],
        "transaction": [transaction() for _ in range(max(count // 5, 20))],
        "mixed": [mixed() for _ in range(count)],
    }


class Stored:
    """The patients as the server holds them, each fetched once: before any call changes
    them, for the updates' bodies and the floor's copy."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.patients: dict[str, dict[str, Any]] = {}

    def __call__(self, path: str) -> dict[str, Any]:
        if path not in self.patients:
            self.patients[path] = self.client.get(path).raise_for_status().json()
        return copy.deepcopy(self.patients[path])


def seed_floor(database_url: str, stored: Stored, calls: list[Call]) -> None:
    """Give the floor the patients the reads and updates name, as the server serves them."""
    resources = [stored(path) for path in sorted({c.path for c in calls if c.method != "POST"})]
    floor = Floor(database_url)
    with floor.database.transaction(write=True) as conn:
        conn.exec_driver_sql("DELETE FROM bench_floor_resource")
    floor.seed(resources)
    floor.database.dispose()


def run_benchmark(database_url: str, scale: str, count: int, concurrency: int, seed: int) -> dict:
    server, server_url = start_http(database_url)
    try:
        settle(database_url)
        with httpx.Client(base_url=server_url, timeout=60) as client:
            stored = Stored(client)
            calls = workload(scale, count + count // 10, seed, stored)
            seed_floor(database_url, stored, calls["read"] + calls["update"] + calls["mixed"])
        floor, floor_url = start_process(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.floor:app",
                "--port",
                "{port}",
                "--no-access-log",
            ],
            "/ready",
            {"DATABASE_URL": database_url},
        )
        try:
            scenarios = {}
            for name, scenario in calls.items():
                # Warm-up calls of their own: an update sent again would change nothing, and
                # the server answers such a PUT without writing a version.
                warm, scenario = scenario[: len(scenario) // 11], scenario[len(scenario) // 11 :]
                drive(floor_url, warm, concurrency)
                drive(server_url, warm, concurrency)
                measured = {
                    "floor": drive(floor_url, scenario, concurrency).summary(),
                    "server": drive(server_url, scenario, concurrency).summary(),
                }
                scenarios[name] = measured | {"ratio": _ratio(name, measured, scenarios)}
                typer.echo(f"{name}: {scenarios[name]['ratio']}")
            memory = peak_memory_mb(server)
        finally:
            stop(floor)
    finally:
        stop(server)
    return {
        "database": database_url.split(":", 1)[0].split("+")[0],
        "scale": scale,
        "concurrency": concurrency,
        **machine(),
        "server_peak_memory_mb": memory,
        "scenarios": scenarios,
        "goals": {
            name: {"goal": goal, "reached": scenarios[name]["ratio"]["throughput"] >= goal}
            for name, goal in GOALS.items()
        },
    }


def _ratio(name: str, measured: dict, earlier: dict) -> dict[str, float]:
    """Throughput as a share of the floor's (higher is better) and p95 latency as a multiple
    of it. A transaction of ten entries is held to ten floor creates, as the goal says."""
    server, floor = measured["server"], measured["floor"]
    floor_rate = floor["throughput_per_s"]
    if name == "transaction":
        floor_rate = earlier["create"]["floor"]["throughput_per_s"] / 10
    return {
        "throughput": round(server["throughput_per_s"] / floor_rate, 2),
        "p95": round(server["latency_ms"]["p95"] / floor["latency_ms"]["p95"], 2),
    }


def main(
    database_url: str = typer.Option(..., help="A database loaded by bench.load."),
    scale: str = typer.Option(..., help="The scale it was loaded with (1k, 100k, 1m)."),
    count: int = typer.Option(2000, help="Requests per scenario."),
    concurrency: int = typer.Option(8, help="Requests in flight."),
    seed: int = typer.Option(11),
) -> None:
    report = run_benchmark(database_url, scale, count, concurrency, seed)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"crud-{report['database']}-{scale}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    typer.echo(f"written {path}")


if __name__ == "__main__":
    typer.run(main)
