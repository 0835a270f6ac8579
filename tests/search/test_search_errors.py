"""Parameters the server cannot honour (search.html#errors): unknown parameters, unsupported
modifiers and malformed values. By default (`Prefer: handling=lenient`) they are ignored, said in
an OperationOutcome entry (search.mode=outcome) and left out of the self link; with
`Prefer: handling=strict` the search is refused with 400 and an OperationOutcome."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.conftest import LiveServer
from tests.search.data import STRICT, cpts, ids, link, loaded, problems, search

ALL = {"1", "2", "3", "4", "5", "6"}


@pytest.fixture
def fhir_cpts(live: LiveServer) -> Iterator[httpx.Client]:
    yield from loaded(live, "cpts", cpts)


def self_params(bundle: dict) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(link(bundle, "self")).query)


# Each bad parameter comes with `gender=female` (patients 1, 2, 5), which still applies.
@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("foo", "bar", "Unknown search parameter 'foo'"),
        ("name:foo", "x", "Modifier :foo is not supported"),
        ("gender:exact", "female", "Modifier :exact is not supported"),  # a string modifier
        ("name:missing", "maybe", ":missing takes true or false"),
        ("birthdate", "2026-13-45", "Malformed date"),
        ("birthdate", "yesterday", "Malformed date"),
        ("birthdate", "gt", "Malformed date"),
        ("general-practitioner", "a/b/c", "Malformed reference"),
        ("identifier:of-type", "PI|IPP-0001", ":of-type takes system|code|value"),
        ("identifier", "a|b|c", "Malformed token"),
        ("name.family", "dupont", "Chaining needs a reference parameter"),
        ("general-practitioner.nope", "x", "has a parameter"),
        ("general-practitioner:Unicorn", "x", "Modifier :Unicorn is not supported"),
        ("_has:Observation:nope:code", "x", "Observation has no reference parameter 'nope'"),
        ("_has:Observation", "x", "Malformed _has"),
        ("_count", "many", "_count takes a non-negative integer"),
        ("_total", "some", "_total takes none, estimate or accurate"),
        ("_summary", "short", "_summary takes one of"),
        ("_sort", "shoe-size", "Unknown search parameter 'shoe-size'"),
        ("_include", "Patient:nope", "Patient has no reference parameter 'nope'"),
        ("_include:deep", "Patient:general-practitioner", "Unknown modifier _include:deep"),
        ("_contained", "true", "_contained is not supported"),
        ("_filter", "name eq x", "_filter is not supported"),
    ],
)
def test_lenient_then_strict(fhir_cpts: httpx.Client, name: str, value: str, why: str) -> None:
    params = [("gender", "female"), (name, value)]
    bundle = search(fhir_cpts, "/Patient", params)
    assert set(ids(bundle)) == {"1", "2", "5"}
    (problem,) = problems(bundle)
    assert f"{name}={value}" in problem and why in problem
    assert self_params(bundle) == [("gender", "female")]

    response = fhir_cpts.get("/Patient", params=params, headers=STRICT)
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error" and why in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("path", "name", "value", "why"),
    [
        ("/RiskAssessment", "probability", "abc", "Malformed number"),
        ("/RiskAssessment", "probability", "gt", "Malformed number"),
        ("/Observation", "value-quantity", "5.4|mg", "Malformed quantity"),
        ("/Observation", "value-quantity", "x||mg", "Malformed number"),
        ("/Observation", "component-code-value-quantity", "8480-6", "takes 2 values joined by $"),
        ("/Observation", "code-value-quantity", "8480-6$lots", "Malformed number"),
    ],
)
def test_malformed_values_of_other_types(
    fhir_cpts: httpx.Client, path: str, name: str, value: str, why: str
) -> None:
    bundle = search(fhir_cpts, path, {name: value, "_count": "0"})
    (problem,) = problems(bundle)
    assert why in problem
    assert self_params(bundle) == [("_count", "0")]
    response = fhir_cpts.get(path, params={name: value}, headers=STRICT)
    assert response.status_code == 400 and why in response.text


def test_one_bad_value_drops_its_whole_parameter(fhir_cpts: httpx.Client) -> None:
    """A bad value among ORed ones: the whole parameter is ignored (the others alone would
    narrow the search wrongly); the other parameters apply."""
    bundle = search(fhir_cpts, "/Patient", [("birthdate", "1950,someday"), ("gender", "male")])
    assert set(ids(bundle)) == {"3", "4"}
    assert len(problems(bundle)) == 1


def test_several_problems_are_all_said(fhir_cpts: httpx.Client) -> None:
    bundle = search(fhir_cpts, "/Patient", {"foo": "1", "bar": "2", "birthdate": "x"})
    assert set(ids(bundle)) == ALL
    assert len(problems(bundle)) == 3
    assert self_params(bundle) == []


def test_no_problem_no_outcome(fhir_cpts: httpx.Client) -> None:
    bundle = search(fhir_cpts, "/Patient", {"name": "dupont"}, headers=STRICT)
    assert ids(bundle) == ["1"] and problems(bundle) == []
    lenient = {"prefer": "handling=lenient"}
    assert fhir_cpts.get("/Patient", params={"name": "x"}, headers=lenient).status_code == 200


def test_conditional_interactions_are_always_strict(fhir_cpts: httpx.Client) -> None:
    """A conditional update must never match more than asked: unknown criteria are errors."""
    response = fhir_cpts.put(
        "/Patient",
        params={"foo": "bar"},
        json={"resourceType": "Patient"},
        headers={"content-type": "application/fhir+json"},
    )
    assert response.status_code == 400
