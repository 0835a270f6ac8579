"""The compiled FHIRPath subset gives fhirpathpy's results: on every invariant of the shipped
profiles, over every example resource, and on expressions that exercise each operator and
function of the subset, including empty collections and missing elements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.models import models

from fhir_server.validation.fhirpath import (
    FhirPathError,
    PrimitiveExtensions,
    Unsupported,
    compile_fast,
)
from fhir_server.validation.invariants import compile_invariant
from profiles import PROFILES_DIR

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "profiles"


def reference(expression: str, item: Any, resource: dict[str, Any]) -> list[Any]:
    context = {"resource": resource, "rootResource": resource}
    return fhirpath_compile(expression, models["r4"])(item, context)


def fast(expression: str, item: Any, resource: dict[str, Any]) -> list[Any]:
    return compile_fast(expression)([item], resource)


def _definitions() -> list[dict[str, Any]]:
    folder = PROFILES_DIR / "structure-definitions"
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]


def _examples() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(EXAMPLES.glob("*/*.json"))]


def _items(value: Any, names: list[str]) -> list[Any]:
    values = [value]
    for name in names:
        found = []
        for item in values:
            child = item.get(name) if isinstance(item, dict) else None
            found.extend(child if isinstance(child, list) else [] if child is None else [child])
        values = found
    return values


def _cases() -> list[tuple[str, str, Any, dict[str, Any]]]:
    """(invariant key, expression, element, resource) for each place each invariant applies
    in the examples."""
    cases = []
    for definition in _definitions():
        if definition["kind"] != "resource":
            continue
        for element in definition["differential"]["element"]:
            names = element["path"].split(".")[1:]
            for constraint in element.get("constraint", ()):
                for resource in _examples():
                    if resource["resourceType"] == definition["type"]:
                        for item in _items(resource, names):
                            cases.append(
                                (constraint["key"], constraint["expression"], item, resource)
                            )
    return cases


CASES = _cases()


def test_every_invariant_is_exercised() -> None:
    keys = {
        c["key"]
        for d in _definitions()
        for e in d["differential"]["element"]
        for c in e.get("constraint", ())
    }
    assert {case[0] for case in CASES} == keys
    assert len(CASES) > 50


@pytest.mark.parametrize(("key", "expression", "item", "resource"), CASES)
def test_shipped_invariants_agree_with_fhirpathpy(
    key: str, expression: str, item: Any, resource: dict[str, Any]
) -> None:
    invariant = compile_invariant({"key": key, "expression": expression})
    expected = reference(expression, item, resource)
    assert invariant.evaluate(item, resource) == expected
    if key != "cpts-renewal-1":  # date arithmetic: left to fhirpathpy
        assert invariant.compiled
        assert fast(expression, item, resource) == expected


def test_only_the_date_arithmetic_runs_on_fhirpathpy() -> None:
    slow = {
        c["key"]
        for d in _definitions()
        for e in d["differential"]["element"]
        for c in e.get("constraint", ())
        if not compile_invariant(c).compiled
    }
    assert slow == {"cpts-renewal-1"}


RESOURCE: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "extension": [
        {"url": "http://e/a", "valueCoding": {"system": "s", "code": "VALI"}},
        {"url": "http://e/b", "valueString": "x"},
        {"url": "http://e/a", "extension": [{"url": "n", "valueInteger": 3}]},
    ],
    "identifier": [
        {"use": "official", "system": "urn:a", "value": "12345"},
        {"system": "urn:b", "value": "x y"},
        {"use": "old", "system": "urn:a"},
    ],
    "name": [{"given": ["A", "B"], "family": "F"}, {"given": ["C"]}],
    "_birthDate": {"extension": [{"url": "http://e/absent", "valueCode": "unknown"}]},
    "multipleBirthInteger": 2,
}

EXPRESSIONS = [
    "identifier.value",
    "Patient.identifier.system",
    "identifier.where(system = 'urn:a').value",
    "identifier.where(system = 'urn:a').exists()",
    "identifier.exists(use = 'official')",
    "identifier.all(system.exists())",
    "identifier.all(value.exists())",
    "identifier.where(use.empty()).count()",
    "identifier.first().value",
    "identifier.system = 'urn:a'",
    "identifier.system.first() = 'urn:a'",
    "identifier.value.first() != 'x'",
    "name.given = ('A' | 'B' | 'C')",
    "name.given | name.given",
    "name.family | {}",
    "'urn:b' in identifier.system",
    "identifier.system contains 'urn:c'",
    "identifier.use.first() in ('official' | 'usual')",
    "{} in identifier.system",
    "'8' + identifier.value.first()",
    "identifier.value.first() + {}",
    "multipleBirth + 1",
    "multipleBirth = 2",
    "active and identifier.exists()",
    "active and {}",
    "{} and false",
    "{} or true",
    "false or {}",
    "active xor true",
    "{} xor true",
    "false implies {}",
    "{} implies true",
    "{} implies false",
    "true implies {}",
    "active.not()",
    "{}.not()",
    "id.not()",
    "extension('http://e/a').value.code",
    "extension('http://e/b').value",
    "extension.extension.value",
    "extension('http://e/none').exists()",
    "extension.value.ofType(Coding).code",
    "identifier.value.first().matches('^[0-9]+$')",
    "identifier.value.first().matches('3')",
    "identifier.value.last().matches('^[0-9]+$')",
    "identifier.where(value.matches(' ')).system",
    "identifier.where(value.exists()).all(value.contains('3'))",
    "%resource.identifier.count() = 3",
    "identifier.where(%resource.active).count()",
    "identifier.all($this.system = 'urn:a' or $this.system = 'urn:b')",
    "birthDate.exists()",
    "deceased.exists()",
    "'it''s' = 'it' + '''s'",
    "'a\\'b' = 'a' + '\\u0027' + 'b'",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_subset_agrees_with_fhirpathpy(expression: str) -> None:
    invariant = compile_invariant({"key": "t", "expression": expression})
    assert invariant.evaluate(RESOURCE, RESOURCE) == reference(expression, RESOURCE, RESOURCE)


def test_primitive_extensions_are_left_to_fhirpathpy() -> None:
    with pytest.raises(PrimitiveExtensions):
        compile_fast("birthDate.exists()")([RESOURCE], RESOURCE)
    invariant = compile_invariant({"key": "t", "expression": "birthDate.exists()"})
    assert invariant.compiled
    assert invariant.evaluate(RESOURCE, RESOURCE) == [True]


def test_sub_extensions_of_every_extension_of_a_url() -> None:
    """FHIRPath: `extension(u).extension(n)` looks into each extension of url u. fhirpathpy
    2.2 stops at the first one when it has no sub-extension; the compiled form does not."""
    resource = {"resourceType": "Patient", "extension": RESOURCE["extension"]}
    expression = "extension('http://e/a').extension('n').value"
    assert compile_fast(expression)([resource], resource) == [3]


@pytest.mark.parametrize(
    "expression",
    [
        "birthDate < @2020-01-01",
        "identifier.count() > 1",
        "iif(active, 1, 2)",
        "identifier.value.ofType(string)",
        "value is Coding",
        "identifier[0]",
        "-1",
        "1.5 = 1.5",
        "name.`given`",
        "%context.id",
        "identifier.select(value)",
        "a ~ b",
        "a & b",
    ],
)
def test_beyond_the_subset_is_refused_at_compile_time(expression: str) -> None:
    with pytest.raises(Unsupported):
        compile_fast(expression)


@pytest.mark.parametrize(
    "expression",
    ["identifier.system and true", "identifier.value.matches('1')", "name.given + 'x'"],
)
def test_evaluation_errors_are_raised(expression: str) -> None:
    with pytest.raises(FhirPathError):
        compile_fast(expression)([RESOURCE], RESOURCE)
    with pytest.raises(Exception):  # noqa: B017 - fhirpathpy raises bare Exceptions
        reference(expression, RESOURCE, RESOURCE)
