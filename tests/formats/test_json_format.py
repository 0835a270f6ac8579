"""The JSON codec keeps decimals exact (`1.50` stays `1.50`) and reads everything else with
orjson: only number tokens decide, never text that looks like a number inside a string."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fhir_server.formats.json_format import dumps, loads


@pytest.mark.parametrize(
    ("text", "exact"),
    [
        ('{"value": 71.50}', "71.50"),
        ('{"value":-1.0}', "-1.0"),
        ('{"value": 1.5e3}', "1.5E+3"),
        ('{"value": 1E-7}', "1E-7"),
        ('{"values": [2.5, 0.10]}', "0.10"),
        ('{"values":[\n  3.20]}', "3.20"),
        ('{"value": 0.12345678901234567}', "0.12345678901234567"),
        ("1.50", "1.50"),
    ],
)
def test_decimals_a_float_would_alter_are_kept(text: str, exact: str) -> None:
    assert exact in dumps(loads(text)).decode()


def test_numbers_in_strings_leave_the_floats_alone() -> None:
    body = (
        '{"meta": {"lastUpdated": "2026-11-24T09:00:00.120+00:00"}, "note": "dose 2.50 mg '
        'x2.0 (batch 12345678901234567)", "valueQuantity": {"value": 1.5}}'
    )
    parsed = loads(body)
    assert type(parsed["valueQuantity"]["value"]) is float
    assert parsed["meta"]["lastUpdated"] == "2026-11-24T09:00:00.120+00:00"


def test_a_decimal_beside_a_timestamp_is_kept() -> None:
    parsed = loads('{"recorded": "2026-11-24T09:00:00.120Z", "value": 2.50}')
    assert parsed["value"] == Decimal("2.50") and str(parsed["value"]) == "2.50"
