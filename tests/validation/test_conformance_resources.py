"""The conformance resources shipped in profiles/: valid FHIR R4, under their canonical URLs,
authored as differentials, and what the validator serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_server.model.structure import check_resource
from fhir_server.validation import Validator
from fhir_server.validation.structure_definitions import load_folder
from fhir_server.validation.value_sets import ValueSets
from profiles import PROFILES_DIR, TABLES_DIR

FR = "https://hl7.fr/ig/fhir/core"
CPTS = "https://cpts-fhir.org/fhir"
FOLDERS = {
    "structure-definitions": "StructureDefinition",
    "value-sets": "ValueSet",
    "code-systems": "CodeSystem",
    "operation-definitions": "OperationDefinition",
}
FILES = sorted(p for folder in FOLDERS for p in (PROFILES_DIR / folder).glob("*.json"))
CANONICALS = {
    "StructureDefinition": {
        f"{FR}/StructureDefinition/fr-core-identity-reliability",
        f"{FR}/StructureDefinition/fr-core-patient",
        f"{FR}/StructureDefinition/fr-core-patient-ins",
        f"{FR}/StructureDefinition/fr-core-practitioner",
        f"{FR}/StructureDefinition/fr-core-organization",
        f"{CPTS}/StructureDefinition/pathway",
        f"{CPTS}/StructureDefinition/pathway-careplan",
        f"{CPTS}/StructureDefinition/pathway-task",
        f"{CPTS}/StructureDefinition/pathway-step",
        f"{CPTS}/StructureDefinition/funding-source",
        f"{CPTS}/StructureDefinition/renewal-medicationrequest",
        f"{CPTS}/StructureDefinition/discharge-documentreference",
    },
    "ValueSet": {
        f"{FR}/ValueSet/fr-core-vs-identity-reliability",
        f"{FR}/ValueSet/fr-core-vs-mode-validation-identity",
        f"{FR}/ValueSet/fr-core-vs-patient-gender-INS",
        f"{CPTS}/ValueSet/pathway",
        f"{CPTS}/ValueSet/pathway-task-status",
        f"{CPTS}/ValueSet/pathway-document-type",
        f"{CPTS}/ValueSet/funding-source",
    },
    "CodeSystem": {
        f"{FR}/CodeSystem/fr-core-cs-v2-0445",
        f"{FR}/CodeSystem/fr-core-cs-mode-validation-identity",
        f"{FR}/CodeSystem/fr-core-cs-v2-0203",
        f"{CPTS}/CodeSystem/pathway",
        f"{CPTS}/CodeSystem/pathway-step",
        f"{CPTS}/CodeSystem/care-role",
        f"{CPTS}/CodeSystem/task-business-status",
        f"{CPTS}/CodeSystem/funding-source",
        f"{CPTS}/CodeSystem/pathway-indicator",
        f"{CPTS}/CodeSystem/coordination-task",
    },
    "OperationDefinition": {
        f"{CPTS}/OperationDefinition/PlanDefinition-apply",
        f"{CPTS}/OperationDefinition/Measure-evaluate-measure",
    },
}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_resource_is_valid_fhir_r4(validator: Validator, path: Path) -> None:
    resource = _load(path)
    check_resource(resource, FOLDERS[path.parent.name])
    assert validator.validate(resource) == []  # stored like any resource: base bindings hold
    assert resource["id"] == path.stem == resource["url"].rsplit("/", 1)[1]
    assert resource["version"] and resource["status"] == "active"
    if resource["resourceType"] == "StructureDefinition":
        assert resource["differential"]["element"]
        assert "snapshot" not in resource  # the differential is the source of truth
        assert resource["derivation"] == "constraint"


def test_canonical_urls() -> None:
    shipped: dict[str, set[str]] = {}
    for path in FILES:
        resource = _load(path)
        shipped.setdefault(resource["resourceType"], set()).add(resource["url"])
    assert shipped == CANONICALS


def test_validator_serves_copies_of_what_it_ships(validator: Validator) -> None:
    served = {
        "StructureDefinition": validator.structure_definitions(),
        "ValueSet": validator.value_sets(),
        "CodeSystem": validator.code_systems(),
    }
    assert {kind: {r["url"] for r in resources} for kind, resources in served.items()} == {
        kind: urls for kind, urls in CANONICALS.items() if kind in served
    }
    served["StructureDefinition"][0]["differential"]["element"].clear()
    assert validator.structure_definitions()[0]["differential"]["element"]


def test_the_pathway_extension_is_the_one_searched() -> None:
    url = f"{CPTS}/StructureDefinition/pathway"
    for name in ("Task-pathway.json", "CarePlan-pathway.json"):
        parameter = _load(PROFILES_DIR / "search-parameters" / name)
        assert f"extension('{url}')" in parameter["expression"]


def test_value_sets_expand_to_their_codes() -> None:
    table = json.loads((TABLES_DIR / "required-bindings.json").read_text())
    value_sets = ValueSets(
        load_folder(PROFILES_DIR / "value-sets", "ValueSet"),
        load_folder(PROFILES_DIR / "code-systems", "CodeSystem"),
        table["valueSets"],
    )
    codes = {url: value_sets.expansion(url).codes for url in CANONICALS["ValueSet"]}
    assert codes[f"{CPTS}/ValueSet/pathway"] == {
        "hospital-discharge",
        "heart-failure",
        "osteoporosis",
        "neurodevelopment",
    }
    assert codes[f"{CPTS}/ValueSet/pathway-document-type"] == {"11490-0", "75468-9"}
    assert codes[f"{CPTS}/ValueSet/funding-source"] == {"pco-forfait", "cpts-aid"}
    base_task_status = value_sets.expansion("http://hl7.org/fhir/ValueSet/task-status").codes
    assert codes[f"{CPTS}/ValueSet/pathway-task-status"] == base_task_status - {"ready"}
    assert codes[f"{FR}/ValueSet/fr-core-vs-patient-gender-INS"] == {"male", "female", "unknown"}
    assert {"VIDE", "PROV", "VALI", "DOUTE", "FICTI"} <= codes[
        f"{FR}/ValueSet/fr-core-vs-identity-reliability"
    ]
    assert {"CN", "PA"} <= codes[f"{FR}/ValueSet/fr-core-vs-mode-validation-identity"]


def test_demo_data_conform_to_fr_core(validator: Validator) -> None:
    """What the server would enforce if it required FR Core for these types."""
    demo = _load(Path(__file__).resolve().parents[2] / "fhir_server" / "demo" / "cpts-demo.json")
    profiles = {
        "Patient": f"{FR}/StructureDefinition/fr-core-patient",
        "Practitioner": f"{FR}/StructureDefinition/fr-core-practitioner",
        "Organization": f"{FR}/StructureDefinition/fr-core-organization",
    }
    checked = 0
    for entry in demo["entry"]:
        resource = entry["resource"]
        profile = profiles.get(resource["resourceType"])
        assert validator.validate(resource, [profile] if profile else []) == []
        checked += profile is not None
    assert checked >= 5
