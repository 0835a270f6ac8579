"""The cost of `PlanDefinition/heart-failure/$apply` over HTTP, against a floor measured in the
same run on the same database: a transaction Bundle creating the same CarePlan and Tasks (the
same resources, validated, versioned and indexed the same way) without the planning.

Each patient has a stay, a care team (GP, IDEL, pharmacist, cardiologist, coordinator) and an
NYHA class III, so that the pathway gives its largest plan: a CarePlan and 23 Tasks. The
difference between the two paths is what `$apply` adds: reading the definition, the patient,
the stay, the care teams and the observations, evaluating the conditions, computing the due
dates, and the idempotency lookup. The two paths take turns on fresh patients.

    python -m bench.pathway_apply --database-url sqlite:///bench/data/pathway-apply.db

The database is migrated when needed and each run adds its own patients (ids tagged with the
run), so a database can be reused; the FHIR server runs as users run it (`python -m fhir_server
serve`, one worker), with outbox consumers off so that triggers do not act on the stays
meanwhile.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from typing import Any

import httpx
import orjson
import typer

from bench.generate import Generator, parse_scale, patient_id, practitioner_id, role_of
from bench.measure import RESULTS, machine, percentiles, start_process, stop
from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.server import Server
from fhir_server.settings import Settings
from pathways.canonical import BASE

JSON = {"content-type": "application/fhir+json"}
PREFIX = f"apply-{uuid.uuid4().hex[:8]}-"  # ids of this run's patients, stays and teams
TEAM_ROLES = ("gp", "idel", "pharmacist", "cardiologist", "coordinator")
CONTEXT = Context(source="bench")


def prepare(database_url: str, patients: int) -> None:
    """Migrate, store the pathway definitions (the plugins do it at start-up) and add this
    run's care team and patients. The team is the run's own: on a database loaded with a CPTS,
    its tasks would otherwise pile up, run after run, on the worklists of the same nurse."""
    server = Server(Settings(database_url=database_url))
    try:
        generator = Generator(parse_scale("1k"))
        first: dict[str, int] = {}
        for n in range(40):
            first.setdefault(role_of(n), n)
        resources = [
            generator.practitioner(n) | {"id": PREFIX + practitioner_id(n)} for n in first.values()
        ]
        members = {role: PREFIX + practitioner_id(n) for role, n in first.items()}
        for n in range(patients):
            resources += _record(generator, n, members)
        for start in range(0, len(resources), 500):
            chunk = resources[start : start + 500]
            server.engine.in_transaction(True, CONTEXT, lambda uow, c=chunk: _store(server, uow, c))
    finally:
        server.close()


def _store(server: Server, uow: Any, chunk: list[dict[str, Any]]) -> None:
    for resource in chunk:
        server.engine.run(
            uow,
            Interaction(Kind.UPDATE, resource["resourceType"], resource["id"], resource=resource),
            CONTEXT,
        )


def _patient(n: int) -> str:
    return PREFIX + patient_id(n)


def _record(generator: Generator, n: int, members: dict[str, str]) -> list[dict[str, Any]]:
    """A patient discharged after a cardiac decompensation, with a care team and NYHA III."""
    patient = next(generator.patient_record(n)) | {"id": _patient(n)}
    subject = {"reference": f"Patient/{patient['id']}"}
    return [
        patient,
        {
            "resourceType": "Encounter",
            "id": f"{PREFIX}stay-{n:07d}",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": subject,
            "period": {"start": "2026-11-16T10:00:00+01:00", "end": "2026-11-23T15:00:00+01:00"},
        },
        {
            "resourceType": "CareTeam",
            "id": f"{PREFIX}team-{n:07d}",
            "status": "active",
            "subject": subject,
            "participant": [
                {
                    "role": [{"coding": [{"system": f"{BASE}/CodeSystem/care-role", "code": r}]}],
                    "member": {"reference": f"Practitioner/{members[r]}"},
                }
                for r in TEAM_ROLES
            ],
        },
        {
            "resourceType": "Observation",
            "id": f"{PREFIX}nyha-{n:07d}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "88020-3"}]},
            "subject": subject,
            "effectiveDateTime": "2026-11-22T10:00:00+01:00",
            "valueCodeableConcept": {
                "coding": [{"system": "http://loinc.org", "code": "LA28406-9"}]
            },
        },
    ]


def apply_body(n: int) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "subject", "valueReference": {"reference": f"Patient/{_patient(n)}"}},
                {"name": "encounter", "valueString": f"Encounter/{PREFIX}stay-{n:07d}"},
            ],
        }
    )


def floor_template(client: httpx.Client, careplan: dict[str, Any]) -> str:
    """The transaction Bundle of the CarePlan and Tasks an `$apply` created (patient 0), as
    JSON text in which `floor_bundle` gives each resource a new id and another patient."""
    tasks = client.get(
        "/Task", params={"based-on": f"CarePlan/{careplan['id']}", "_count": 100}
    ).json()
    resources = [careplan, *(e["resource"] for e in tasks["entry"])]
    entries = []
    for resource in resources:
        resource = {k: v for k, v in resource.items() if k != "id"}
        resource["meta"] = {"profile": resource["meta"]["profile"]}
        entries.append(
            {
                "fullUrl": f"{resource['resourceType']}/{{{len(entries)}}}",
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
    text = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    for index, resource in enumerate(resources):
        text = text.replace(f"{resource['resourceType']}/{resource['id']}", f"{{{index}}}")
    return text


def floor_bundle(template: str, n: int) -> bytes:
    ids = {}

    def fresh(match: re.Match[str]) -> str:
        return ids.setdefault(match.group(1), f"urn:uuid:{uuid.uuid4()}")

    text = re.sub(r"(?:CarePlan/|Task/)?\{(\d+)\}", fresh, template)
    return text.replace(f"-{0:07d}", f"-{n:07d}").encode()  # patient, stay, team


def run_benchmark(database_url: str, calls: int) -> dict[str, Any]:
    database = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    prepare(database_url, 2 * calls + 1)
    process, base = start_process(
        [sys.executable, "-m", "fhir_server", "serve", "--port", "{port}"],
        "/metadata",
        {
            "DATABASE_URL": database_url,
            "FHIR_MIGRATE_ON_START": "false",
            "FHIR_OUTBOX_IN_PROCESS": "false",
            "FHIR_SECURITY_ENABLED": "false",  # bench.security_overhead measures security
        },
    )
    try:
        with httpx.Client(base_url=base, timeout=60, headers=JSON) as client:
            first = client.post("/PlanDefinition/heart-failure/$apply", content=apply_body(0))
            if first.status_code != 201:
                raise RuntimeError(f"$apply failed: {first.status_code} {first.text[:500]}")
            template = floor_template(client, first.json())
            tasks = len(first.json()["activity"])
            samples: dict[str, list[float]] = {"apply": [], "transaction_floor": []}
            for call in range(calls):
                paths = [  # (name, url, body, the status of a creation)
                    (
                        "apply",
                        "/PlanDefinition/heart-failure/$apply",
                        apply_body(2 * call + 1),
                        201,
                    ),
                    ("transaction_floor", "/", floor_bundle(template, 2 * call + 2), 200),
                ]
                for name, url, body, created in paths if call % 2 else reversed(paths):
                    start = time.perf_counter()
                    response = client.post(url, content=body)
                    samples[name].append((time.perf_counter() - start) * 1000)
                    if response.status_code != created:
                        raise RuntimeError(f"{name}: {response.status_code} {response.text[:500]}")
    finally:
        stop(process)
    latency = {name: percentiles(values) for name, values in samples.items()}
    result = {
        "database": database,
        **machine(),
        "calls": calls,
        "resources_per_call": 1 + tasks,
        "latency_ms": latency,
        "p50_ratio": round(latency["apply"]["p50"] / latency["transaction_floor"]["p50"], 2),
        "p95_ratio": round(latency["apply"]["p95"] / latency["transaction_floor"]["p95"], 2),
    }
    return result


def main(
    database_url: str = typer.Option(..., help="SQLite or PostgreSQL URL (kept for reruns)."),
    calls: int = typer.Option(200, help="Calls of each path."),
) -> None:
    result = run_benchmark(database_url, calls)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"pathway-apply-{result['database']}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    typer.run(main)
