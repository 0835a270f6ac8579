"""Number (search.html#number) and quantity (#quantity) search: implicit precision ranges and
prefixes, with and without units.

A search number stands for the range its precision gives: `100` is [99.5, 100.5), `100.0` is
[99.95, 100.05). `eq` and `ne` use that range; `gt lt ge le` compare with the exact value
("greater than exactly 100"); `sa`/`eb` are `gt`/`lt` on a stored number, which is a point (as in
HAPI FHIR); `ap` is within 10 % of the value."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.search.data import UCUM, found, loaded


def _risk(id_: str, *probabilities: float) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": id_,
        "status": "final",
        "subject": {"reference": "Patient/1"},
    }
    if probabilities:
        resource["prediction"] = [{"probabilityDecimal": p} for p in probabilities]
    return resource


def _value(
    id_: str,
    value: float | None,
    unit: str | None,
    system: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"text": "quantity test"},
    }
    if value is None:
        resource["valueString"] = "not measured"
        return resource
    quantity: dict[str, Any] = {"value": value}
    for key, item in (("unit", unit), ("system", system), ("code", code)):
        if item is not None:
            quantity[key] = item
    resource["valueQuantity"] = quantity
    return resource


OTHER_UNITS = "http://example.org/units"
DATA = [
    _risk("ra-100", 100),
    _risk("ra-100.4", 100.4),
    _risk("ra-99.5", 99.5),
    _risk("ra-100.5", 100.5),
    _risk("ra-99.4", 99.4),
    _risk("ra-multi", 10, 100.2),  # two predictions
    _risk("ra-50", 50),
    _risk("ra-none"),
    _value("q-mmol", 5.4, "mmol/L", UCUM, "mmol/L"),
    _value("q-mg", 5.4, "mg", UCUM, "mg"),
    _value("q-unit-only", 5.42, "mg"),  # a unit, neither system nor code
    _value("q-g", 5.4, "g", UCUM, "g"),
    _value("q-high", 6, "mg", UCUM, "mg"),
    _value("q-low", 5.34, "mg", UCUM, "mg"),
    _value("q-other-system", 5.4, "milligram", OTHER_UNITS, "mg"),
    _value("q-none", None, None),
]


@pytest.fixture
def fhir_numbers(live: LiveServer) -> Iterator[httpx.Client]:
    yield from loaded(live, "numbers", lambda: DATA)


# Stored probabilities: 100, 100.4, 99.5, 100.5, 99.4, {10, 100.2}, 50, none.
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100", {"ra-100", "ra-100.4", "ra-99.5", "ra-multi"}),  # [99.5, 100.5)
        ("eq100", {"ra-100", "ra-100.4", "ra-99.5", "ra-multi"}),
        ("100.0", {"ra-100"}),  # [99.95, 100.05)
        ("100.00", {"ra-100"}),
        ("100.4", {"ra-100.4"}),  # [100.35, 100.45)
        ("99.5", {"ra-99.5"}),
        ("gt100", {"ra-100.4", "ra-100.5", "ra-multi"}),  # above exactly 100 (100.2 for multi)
        ("ge100", {"ra-100", "ra-100.4", "ra-100.5", "ra-multi"}),
        ("lt100", {"ra-99.5", "ra-99.4", "ra-multi", "ra-50"}),  # multi's 10
        ("le100", {"ra-100", "ra-99.5", "ra-99.4", "ra-multi", "ra-50"}),
        # Outside [99.5, 100.5): 100.5, 99.4, 50, and multi's 10.
        ("ne100", {"ra-100.5", "ra-99.4", "ra-multi", "ra-50"}),
        ("sa100", {"ra-100.4", "ra-100.5", "ra-multi"}),
        ("eb100", {"ra-99.5", "ra-99.4", "ra-multi", "ra-50"}),
        # ap: within 10 %, [90, 110].
        ("ap100", {"ra-100", "ra-100.4", "ra-99.5", "ra-100.5", "ra-99.4", "ra-multi"}),
        ("50,10", {"ra-50", "ra-multi"}),
        ("-3", set()),
        ("gt-3", {"ra-100", "ra-100.4", "ra-99.5", "ra-100.5", "ra-99.4", "ra-multi", "ra-50"}),
    ],
)
def test_number(fhir_numbers: httpx.Client, value: str, expected: set[str]) -> None:
    assert found(fhir_numbers, "/RiskAssessment", {"probability": value}) == expected


def test_number_and_missing(fhir_numbers: httpx.Client) -> None:
    # Each criterion may be met by a different value: multi's 100.2 > 100.1 and its 10 < 11.
    params = [("probability", "gt100.1"), ("probability", "lt11")]
    assert found(fhir_numbers, "/RiskAssessment", params) == {"ra-multi"}
    assert found(fhir_numbers, "/RiskAssessment", {"probability:missing": "true"}) == {"ra-none"}


# Stored quantities: mmol 5.4 mmol/L, mg 5.4 mg, unit-only 5.42 "mg" (no system, no code),
# g 5.4 g, high 6 mg, low 5.34 mg (all UCUM); other-system 5.4 code "mg" in OTHER_UNITS with the
# unit text "milligram"; none has no Quantity.
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # 5.4 is [5.35, 5.45) whatever the unit.
        ("5.4", {"q-mmol", "q-mg", "q-unit-only", "q-g", "q-other-system"}),
        (f"5.4|{UCUM}|mg", {"q-mg"}),
        (f"5.40|{UCUM}|mg", {"q-mg"}),  # [5.395, 5.405)
        # No system: the code or the unit text is "mg".
        ("5.4||mg", {"q-mg", "q-unit-only", "q-other-system"}),
        ("5.4||milligram", {"q-other-system"}),
        ("5.4||g", {"q-g"}),
        ("5.4||mmol/L", {"q-mmol"}),
        (f"5.4|{UCUM}|", {"q-mmol", "q-mg", "q-g"}),
        (f"5.4|{UCUM}|kg", set()),
        ("gt5.4||mg", {"q-unit-only", "q-high"}),
        ("sa5.4||mg", {"q-unit-only", "q-high"}),
        (f"lt5.4|{UCUM}|mg", {"q-low"}),
        (f"eb5.4|{UCUM}|mg", {"q-low"}),
        (f"ge5.4|{UCUM}|mg", {"q-mg", "q-high"}),
        ("le5.4||mg", {"q-mg", "q-low", "q-other-system"}),
        (f"ne5.4|{UCUM}|mg", {"q-high", "q-low"}),
        (f"ap5.4|{UCUM}|mg", {"q-mg", "q-low"}),  # [4.86, 5.94]: not 6
        ("6||mg,5.4||g", {"q-high", "q-g"}),
    ],
)
def test_quantity(fhir_numbers: httpx.Client, value: str, expected: set[str]) -> None:
    assert found(fhir_numbers, "/Observation", {"value-quantity": value}) == expected


def test_quantity_missing(fhir_numbers: httpx.Client) -> None:
    assert found(fhir_numbers, "/Observation", {"value-quantity:missing": "true"}) == {"q-none"}
