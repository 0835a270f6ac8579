"""What security costs: the IDEL worklist and a create, sent by the same driver to the same
database through two servers, one with security off and one with it on (a token verified per
request, scopes, role and care relation checked in SQL, an AuditEvent written per request).

    python -m bench.security_overhead --database-url sqlite:///bench/data/100k.db --scale 100k

The database must hold a CPTS loaded by `bench.load`. Each nurse reads her own worklist with a
token of her own, and records an observation for a patient of one of her tasks: what she may
see and write. The two servers take turns (off, on, on, off) so that the machine's drift weighs
on both; the figures add both turns. Goal (docs/performance.md): secured latency and
throughput within 1.3x of the unsecured ones.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import typer
from sqlalchemy import create_engine, text

from bench.driver import Call, Run, drive
from bench.generate import Generator, parse_scale, practitioner_id
from bench.measure import (
    RESULTS,
    cpu_seconds,
    machine,
    peak_memory_mb,
    settle,
    start_http,
    stop,
)
from bench.search_latency import worklist_params
from fhir_server.search.backlog import WAITING
from fhir_server.security.principal import IDEL
from fhir_server.security.tokens import LocalIssuer
from fhir_server.settings import Settings

GOAL = 1.3
# The nurse's own tasks give the patients she may see: (nurse, patient) pairs.
_PAIRS = """
SELECT o.target_id, p.target_id
FROM search_reference o JOIN search_reference p ON p.resource_pk = o.resource_pk
WHERE o.type = 'Task' AND o.param = 'owner' AND o.target_type = 'Practitioner'
  AND p.type = 'Task' AND p.param = 'patient' AND p.target_type = 'Patient'
  AND o.target_id IN ({nurses})
"""


def _pairs(database_url: str, nurses: list[str], count: int, rng: random.Random) -> list:
    """(nurse, patient) per call: every nurse with tasks equally often, as each nurse's
    software polls her worklist at its own pace whatever its length, then a patient of hers.
    Drawn per task instead, a nurse owning the 12,950 tasks of earlier `$apply` runs made
    most of the calls."""
    engine = create_engine(database_url)
    quoted = ", ".join(f"'{n}'" for n in nurses)
    patients: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for nurse, patient in conn.execute(text(_PAIRS.format(nurses=quoted))):
            patients.setdefault(nurse, []).append(patient)
    engine.dispose()
    having = sorted(patients)
    return [
        (nurse, rng.choice(patients[nurse])) for nurse in (rng.choice(having) for _ in range(count))
    ]


def _observation(nurse: str, patient: str, n: int) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": f"Patient/{patient}"},
            "performer": [{"reference": f"Practitioner/{nurse}"}],
            "effectiveDateTime": "2026-11-24T09:00:00+01:00",
            "valueQuantity": {"value": 60 + n % 40, "unit": "kg", "code": "kg"},
        }
    )


def _calls(pairs: list, tokens: dict[str, str] | None) -> dict[str, list[Call]]:
    def token(nurse: str) -> str | None:
        return tokens[nurse] if tokens else None

    return {
        "worklist": [
            Call("GET", "/Task?" + urlencode(worklist_params(nurse)), token=token(nurse))
            for nurse, _ in pairs
        ],
        "create": [
            Call("POST", "/Observation", _observation(nurse, patient, n), 201, token(nurse))
            for n, (nurse, patient) in enumerate(pairs)
        ],
    }


def _backlog(database_url: str) -> int:
    """AuditEvents waiting for their index rows."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(WAITING).scalar_one()
    finally:
        engine.dispose()


def _merge(runs: list[Run]) -> dict[str, Any]:
    """The summary of both turns of a side, as one run."""
    failure = next((run.first_failure for run in runs if run.first_failure), None)
    merged = Run(
        sum(run.seconds for run in runs),
        [ms for run in runs for ms in run.latencies_ms],
        sum(run.failures for run in runs),
        failure,
    )
    return merged.summary()


def run_benchmark(
    database_url: str, scale_text: str, requests: int, concurrency: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    nurses = [practitioner_id(n) for n in Generator(parse_scale(scale_text)).by_role["idel"]]
    pairs = _pairs(database_url, nurses, requests, rng)
    with tempfile.TemporaryDirectory() as keys:
        key = str(Path(keys) / "signing-key.pem")
        issuer = LocalIssuer(Settings(auth_local_key=key))
        tokens = {
            nurse: issuer.issue(
                nurse, [IDEL], "user/*.cruds", fhir_user=f"Practitioner/{nurse}", lifetime=7200
            )
            for nurse in {nurse for nurse, _ in pairs}
        }
        servers = {
            # Only the secured server indexes the audit trail: the other, idle during the
            # secured side's turns, indexed there what that side had just written, on the
            # same 2 cores.
            "off": start_http(database_url, {"FHIR_INDEX_BACKLOG_SECONDS": "0"}),
            "on": start_http(
                database_url,
                {
                    "FHIR_SECURITY_ENABLED": "true",
                    "FHIR_AUTH_LOCAL_KEY": key,
                    "FHIR_INDEX_BACKLOG_SECONDS": "1",
                },
            ),
        }
        calls = {"off": _calls(pairs, None), "on": _calls(pairs, tokens)}
        runs: dict[str, dict[str, list[Run]]] = {"off": {}, "on": {}}
        cpu: dict[str, dict[str, float]] = {"off": {}, "on": {}}  # server CPU seconds
        indexed = {"events": 0, "cpu_seconds": 0.0}
        try:
            settle(database_url)
            # Warm both: connections, caches. The worklists are warmed with every call they
            # will make: at 1M the first turn read from disk what later turns found in memory
            # (a p99 of 2.4 s on one side, a ratio below 1).
            for side, (_, url) in servers.items():
                for scenario, batch in calls[side].items():
                    warm = batch if scenario == "worklist" else batch[: max(20, requests // 10)]
                    drive(url, warm, concurrency)
            half = requests // 2
            for side in ("off", "on", "on", "off"):
                # The secured server indexes its audit trail once idle: between the turns,
                # its CPU counted apart, never during the other side's turn.
                secured = servers["on"][0]
                waiting, before = _backlog(database_url), cpu_seconds(secured)
                settle(database_url)
                indexed["events"] += waiting
                indexed["cpu_seconds"] += cpu_seconds(secured) - before
                process, url = servers[side]
                part = slice(0, half) if not runs[side] else slice(half, requests)
                for scenario, batch in calls[side].items():
                    before = cpu_seconds(process)
                    runs[side].setdefault(scenario, []).append(drive(url, batch[part], concurrency))
                    spent = cpu_seconds(process) - before
                    cpu[side][scenario] = cpu[side].get(scenario, 0.0) + spent
            memory = {side: peak_memory_mb(process) for side, (process, _) in servers.items()}
        finally:
            for process, _ in servers.values():
                stop(process)
    results: dict[str, Any] = {}
    for scenario in ("worklist", "create"):
        off, on = _merge(runs["off"][scenario]), _merge(runs["on"][scenario])
        results[scenario] = {
            "off": off,
            "on": on,
            "throughput_ratio": round(off["throughput_per_s"] / on["throughput_per_s"], 2),
            "p95_ratio": round(on["latency_ms"]["p95"] / off["latency_ms"]["p95"], 2),
            "goal": GOAL,
            "server_cpu_ms": {
                side: round(cpu[side][scenario] / requests * 1000, 3) for side in ("off", "on")
            },
        }
    return {
        "benchmark": "security-overhead",
        "database": create_engine(database_url).dialect.name,
        "scale": scale_text,
        **machine(),
        "requests": requests,
        "concurrency": concurrency,
        "peak_memory_mb": memory,
        "backlog": {
            "events": indexed["events"],
            "cpu_ms_per_event": round(indexed["cpu_seconds"] / max(1, indexed["events"]) * 1000, 3),
        },
        "scenarios": results,
    }


def main(
    database_url: str = typer.Option(..., help="A database holding a CPTS (bench.load)."),
    scale: str = typer.Option("100k", help="The scale it was loaded at."),
    requests: int = typer.Option(1000, help="Requests of each scenario on each side."),
    concurrency: int = typer.Option(8, help="Requests in flight."),
) -> None:
    result = run_benchmark(database_url, scale, requests, concurrency, seed=13)
    name = f"security-overhead-{result['database']}-{scale}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")
    typer.echo(json.dumps(result["scenarios"], indent=1))


if __name__ == "__main__":
    typer.run(main)
