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
    "name", ["resource-types.json", "search-parameters.json", "compartment-patient.json"]
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
