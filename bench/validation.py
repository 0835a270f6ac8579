"""Cost of profile validation on the write path, against the parse it comes with.

Every write parses the resource with its `fhir.resources` model (the structure check); profile
validation (`Validator.validate`: the base required bindings plus the profile's rules) runs
after it. For a Patient against FR Core Patient INS and a Task against the pathway Task profile,
each iteration times both on the same resource, one after the other, so that the load of the
machine weighs on both alike; the goal is validation ≤ 50 % of the parse.

    python -m bench.validation [--iterations 5000] [--json bench/results/validation.json]
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from fhir_server.model.elements import model_class
from fhir_server.validation import Validator

FR = "https://hl7.fr/ig/fhir/core"
CPTS = "https://cpts-fhir.org/fhir"

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "pat-trois",
    "meta": {"profile": [f"{FR}/StructureDefinition/fr-core-patient-ins"]},
    "extension": [
        {
            "url": f"{FR}/StructureDefinition/fr-core-identity-reliability",
            "extension": [
                {
                    "url": "identityReliability",
                    "valueCoding": {
                        "system": f"{FR}/CodeSystem/fr-core-cs-v2-0445",
                        "code": "VALI",
                    },
                },
                {"url": "validationDate", "valueDate": "2024-03-06"},
                {
                    "url": "validationMode",
                    "valueCoding": {
                        "system": f"{FR}/CodeSystem/fr-core-cs-mode-validation-identity",
                        "code": "CN",
                    },
                },
            ],
        }
    ],
    "identifier": [
        {
            "use": "official",
            "type": {
                "coding": [
                    {"system": f"{FR}/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIR-TEST"}
                ]
            },
            "system": "urn:oid:1.2.250.1.213.1.4.10",
            "value": "279035121518989",
        },
        {"use": "usual", "system": "urn:oid:1.2.3.4.567.8.9.10", "value": "1234567890121"},
    ],
    "name": [
        {"use": "official", "family": "PAT-TROIS", "given": ["DOMINIQUE", "MARIE-LOUISE"]},
        {"use": "usual", "family": "PAT-TROIS", "given": ["DOMINIQUE"]},
    ],
    "telecom": [
        {"system": "phone", "value": "0144534551", "use": "home"},
        {"system": "phone", "value": "0647151010", "use": "mobile"},
        {"system": "email", "value": "279035121518989@patient.mssante.fr"},
    ],
    "gender": "female",
    "birthDate": "1979-03-28",
    "address": [
        {
            "use": "home",
            "line": ["28 Avenue de Breteuil", "Escalier A"],
            "city": "PARIS",
            "postalCode": "75007",
            "country": "FRANCE",
        }
    ],
    "generalPractitioner": [{"reference": "Practitioner/gp-martin"}],
    "managingOrganization": {"reference": "Organization/cpts-demo"},
}

TASK: dict[str, Any] = {
    "resourceType": "Task",
    "id": "task-0000001-1",
    "meta": {"profile": [f"{CPTS}/StructureDefinition/pathway-task"]},
    "extension": [
        {
            "url": f"{CPTS}/StructureDefinition/pathway",
            "valueCoding": {"system": f"{CPTS}/CodeSystem/pathway", "code": "heart-failure"},
        }
    ],
    "instantiatesCanonical": f"{CPTS}/ActivityDefinition/heart-failure-gp-visit",
    "basedOn": [{"reference": "CarePlan/plan-0000001"}],
    "status": "accepted",
    "intent": "order",
    "priority": "routine",
    "code": {"text": "Consultation du médecin traitant sous 7 jours"},
    "description": "Consultation du médecin traitant sous 7 jours",
    "for": {"reference": "Patient/pat-trois"},
    "encounter": {"reference": "Encounter/enc-0000001-1"},
    "authoredOn": "2026-11-23T15:30:00+01:00",
    "requester": {"reference": "Practitioner/coord-durand"},
    "owner": {"reference": "Practitioner/gp-martin"},
    "restriction": {"period": {"end": "2026-11-30T18:00:00+01:00"}},
}


def _percentiles(samples: list[float]) -> dict[str, float]:
    cut = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "mean_us": round(statistics.fmean(samples), 1),
        "p50_us": round(cut[49], 1),
        "p95_us": round(cut[94], 1),
    }


def measure(
    parse: Callable[[], Any], validate: Callable[[], Any], iterations: int
) -> dict[str, Any]:
    for _ in range(max(500, iterations // 10)):
        parse()
        validate()
    parse_us, validate_us = [], []
    for _ in range(iterations):
        start = time.perf_counter()
        parse()
        middle = time.perf_counter()
        validate()
        end = time.perf_counter()
        parse_us.append((middle - start) * 1e6)
        validate_us.append((end - middle) * 1e6)
    parsed, validated = _percentiles(parse_us), _percentiles(validate_us)
    return {
        "parse": parsed,
        "validate": validated,
        "ratio_mean": round(validated["mean_us"] / parsed["mean_us"], 3),
        "ratio_p50": round(validated["p50_us"] / parsed["p50_us"], 3),
    }


def main(
    iterations: int = typer.Option(5000, min=2000, help="timed iterations per resource"),
    json_path: Path | None = typer.Option(None, "--json", help="also write the results here"),
) -> None:
    validator = Validator()
    results: dict[str, Any] = {"python": platform.python_version(), "iterations": iterations}
    for resource in (PATIENT, TASK):
        model, profiles = model_class(resource["resourceType"]), resource["meta"]["profile"]
        if validator.validate(resource, profiles):
            raise SystemExit(f"the benchmark {resource['resourceType']} is not valid")
        result = measure(
            lambda m=model, r=resource: m.model_validate(r),
            lambda r=resource, p=profiles: validator.validate(r, p),
            iterations,
        )
        results[resource["resourceType"]] = {"profile": profiles[0], **result}
        parsed, validated = result["parse"], result["validate"]
        print(
            f"{resource['resourceType']:8} parse {parsed['mean_us']:7.1f} µs"
            f" (p95 {parsed['p95_us']:.1f})   validate {validated['mean_us']:6.1f} µs"
            f" (p95 {validated['p95_us']:.1f})   validate/parse {result['ratio_mean']:.2f}"
            f" (median {result['ratio_p50']:.2f}, goal ≤ 0.50)"
        )
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    typer.run(main)
