"""The compact tables in profiles/tables are exactly what profiles/build_tables.py makes of the
official R4 definitions (checked whenever ../shared is beside the checkout)."""

from __future__ import annotations

import json

import pytest

from profiles import TABLES_DIR
from profiles.build_tables import build
from tests.shared import shared_fixture


@pytest.fixture(scope="module")
def rebuilt() -> dict:
    definitions = shared_fixture("fhir-r4", "search-parameters.json").parent
    return build(definitions)


@pytest.mark.parametrize(
    "name",
    [
        "resource-types.json",
        "search-parameters.json",
        "compartment-patient.json",
        "required-bindings.json",
    ],
)
def test_shipped_table_matches_the_definitions(rebuilt: dict, name: str) -> None:
    shipped = json.loads((TABLES_DIR / name).read_text(encoding="utf-8"))
    assert shipped == rebuilt[name]


def test_every_base_parameter_of_served_types_is_shipped(rebuilt: dict) -> None:
    definitions = json.loads(shared_fixture("fhir-r4", "search-parameters.json").read_text())
    served = set(rebuilt["resource-types.json"]["served"]) | {"Resource", "DomainResource"}
    expected = {
        e["resource"]["url"]
        for e in definitions["entry"]
        if set(e["resource"]["base"]) & served
        and "expression" in e["resource"]
        and e["resource"]["type"] != "special"
    }
    shipped = {p["url"] for p in rebuilt["search-parameters.json"]["parameters"]}
    assert shipped == expected
    assert len(definitions["entry"]) == 1378


def test_every_required_binding_of_served_types_is_shipped_or_listed_unchecked(
    rebuilt: dict,
) -> None:
    definitions = json.loads(shared_fixture("fhir-r4", "required-bindings.json").read_text())
    table = rebuilt["required-bindings.json"]
    served = set(rebuilt["resource-types.json"]["served"])
    unchecked = {path for paths in table["notExpanded"].values() for path in paths}
    for binding in definitions["bindings"]:
        path, root = binding["path"], binding["path"].split(".")[0]
        if root in served:
            assert path in table["bindings"] or path in unchecked
        if path in table["bindings"]:
            assert table["bindings"][path] == binding["valueSet"]
            expected = definitions["valueSets"][binding["valueSet"]]
            codes = table["valueSets"][binding["valueSet"]]
            assert sorted((c["system"], c["code"]) for c in expected) == sorted(
                (system, code) for system, listed in codes.items() for code in listed
            )
    assert set(table["notExpanded"]) <= set(definitions["notExpanded"])
    assert "Task.status" in table["bindings"] and "Patient.gender" in table["bindings"]
    assert "Attachment.contentType" in unchecked  # a data type used by served resources


def test_required_bindings_leave_out_types_that_are_not_served(rebuilt: dict) -> None:
    table = rebuilt["required-bindings.json"]
    roots = {path.split(".")[0] for path in table["bindings"]}
    assert not roots & {"EffectEvidenceSynthesis", "Evidence", "SubscriptionStatus"}
