"""Rebuild the compact tables of `profiles/tables/` from the FHIR R4 core definitions.

Run from the project root: `python -m profiles.build_tables ../shared/fixtures/fhir-r4`.
The server reads only the tables, never the definitions, so it runs without them; the test
`tests/profiles/test_tables.py` regenerates the tables in memory and compares them whenever the
definitions are present.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from fhir_server.model.elements import elements, model_class
from fhir_server.model.fhirpath_text import split_union
from profiles import TABLES_DIR

ABSTRACT_TYPES = {"Resource", "DomainResource"}
# R4B rewrote these resources: their R4B models do not accept R4 instances, so they are not served.
RESHAPED_IN_R4B = {"Evidence", "EvidenceVariable"}


def _modelled(type_name: str) -> bool:
    try:
        get_fhir_model_class(type_name)
    except ValueError:
        return False
    return True


def resource_types(definitions: Path) -> dict[str, Any]:
    bindings = json.loads((definitions / "required-bindings.json").read_text())
    codes = [
        c["code"] for c in bindings["valueSets"]["http://hl7.org/fhir/ValueSet/resource-types"]
    ]
    concrete = [c for c in codes if c not in ABSTRACT_TYPES]
    return {
        "source": "FHIR R4 4.0.1 ValueSet resource-types, intersected with fhir.resources.R4B",
        "served": sorted(c for c in concrete if _modelled(c) and c not in RESHAPED_IN_R4B),
        "notModelled": sorted(c for c in concrete if not _modelled(c)),
        "reshapedInR4B": sorted(RESHAPED_IN_R4B),
    }


def _leading_type(part: str) -> str:
    return part.lstrip("(").split(".", 1)[0].split(" ", 1)[0]


def search_parameters(definitions: Path, served: list[str]) -> dict[str, Any]:
    """Each base SearchParameter with one FHIRPath expression per resource type it applies to."""
    bundle = json.loads((definitions / "search-parameters.json").read_text())
    served_set = set(served) | ABSTRACT_TYPES
    parameters = []
    for entry in bundle["entry"]:
        sp = entry["resource"]
        bases = [b for b in sp["base"] if b in served_set]
        if not bases or "expression" not in sp or sp["type"] == "special":
            continue
        expressions: dict[str, list[str]] = {}
        for part in split_union(sp["expression"]):
            owner = _leading_type(part)
            if len(bases) == 1 and owner not in bases:
                owner = bases[0]
            if owner in bases:
                expressions.setdefault(owner, []).append(part)
        row: dict[str, Any] = {
            "url": sp["url"],
            "code": sp["code"],
            "type": sp["type"],
            "expression": {base: " | ".join(parts) for base, parts in expressions.items()},
        }
        if sp.get("target"):
            row["target"] = [t for t in sp["target"] if t in served_set]
        if sp.get("component"):
            row["component"] = [
                {"definition": c["definition"], "expression": c["expression"]}
                for c in sp["component"]
            ]
        parameters.append(row)
    return {
        "source": "FHIR R4 4.0.1 search-parameters.json, restricted to the served resource "
        "types, one expression per base type",
        "parameters": parameters,
    }


def patient_compartment(definitions: Path, served: list[str]) -> dict[str, Any]:
    """Resource type → the search parameters that place a resource in a Patient compartment."""
    definition = json.loads((definitions / "compartmentdefinition-patient.json").read_text())
    return {
        "source": "FHIR R4 4.0.1 CompartmentDefinition patient",
        "url": definition["url"],
        "members": {
            r["code"]: r["param"]
            for r in definition["resource"]
            if r.get("param") and r["code"] in served
        },
    }


def used_types(served: list[str]) -> set[str]:
    """Names of the served resource types and of every type their elements use, transitively."""
    seen: set[str] = set()
    stack = [model_class(name) for name in served]
    while stack:
        model = stack.pop()
        if model.__name__ not in seen:
            seen.add(model.__name__)
            stack.extend(e.model for e in elements(model).values() if e.model is not None)
    return seen


def required_bindings(definitions: Path, served: list[str]) -> dict[str, Any]:
    """Element path → required value set, for the served types and the data types they use,
    with the codes of each value set by system. Value sets the definitions do not expand (MIME
    types, currencies, UCUM, a LOINC answer list) cannot be checked: listed with their paths."""
    source = json.loads((definitions / "required-bindings.json").read_text())
    used = used_types(served)
    bindings = {
        b["path"]: b["valueSet"] for b in source["bindings"] if b["path"].split(".")[0] in used
    }
    value_sets: dict[str, dict[str, list[str]]] = {}
    not_expanded: dict[str, list[str]] = {}
    for path, url in sorted(bindings.items()):
        if url not in source["valueSets"]:
            not_expanded.setdefault(url, []).append(path)
        elif url not in value_sets:
            by_system: dict[str, list[str]] = {}
            for concept in source["valueSets"][url]:
                by_system.setdefault(concept["system"], []).append(concept["code"])
            value_sets[url] = by_system
    return {
        "source": "FHIR R4 4.0.1 required bindings, restricted to the served resource types and "
        "the data types they use; codes of each value set by system",
        "bindings": {p: u for p, u in sorted(bindings.items()) if u not in not_expanded},
        "valueSets": dict(sorted(value_sets.items())),
        "notExpanded": dict(sorted(not_expanded.items())),
    }


def build(definitions: Path) -> dict[str, Any]:
    """Table file name → content."""
    types = resource_types(definitions)
    return {
        "resource-types.json": types,
        "search-parameters.json": search_parameters(definitions, types["served"]),
        "compartment-patient.json": patient_compartment(definitions, types["served"]),
        "required-bindings.json": required_bindings(definitions, types["served"]),
    }


def main(definitions: str) -> None:
    for name, table in build(Path(definitions)).items():
        (TABLES_DIR / name).write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {TABLES_DIR / name}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/fixtures/fhir-r4")
