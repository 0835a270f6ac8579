"""URI search (search.html#uri: exact, `:below`, `:above`) and composite search (#composite:
all components from the same element)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.search.data import LOINC, UCUM, cpts, found, loaded

BASE = "http://example.org/fhir"


def _value_set(id_: str, url: str | None) -> dict[str, Any]:
    resource = {"resourceType": "ValueSet", "id": id_, "status": "active"}
    return {**resource, "url": url} if url else resource


VALUE_SETS = [
    _value_set("vs-cpts", f"{BASE}/ValueSet/cpts"),
    _value_set("vs-pathways", f"{BASE}/ValueSet/cpts/pathways"),
    _value_set("vs-other", f"{BASE}/ValueSet/other"),
    _value_set("vs-base", BASE),
    _value_set("vs-oid", "urn:oid:1.2.250.1.213.1.1.5.1"),
    _value_set("vs-none", None),
]


@pytest.fixture
def fhir_uris(live: LiveServer) -> Iterator[httpx.Client]:
    yield from loaded(live, "uris", lambda: VALUE_SETS)


@pytest.fixture
def fhir_cpts(live: LiveServer) -> Iterator[httpx.Client]:
    yield from loaded(live, "cpts", cpts)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"url": f"{BASE}/ValueSet/cpts"}, {"vs-cpts"}),
        ({"url": f"{BASE}/ValueSet/CPTS"}, set()),  # URIs are case-sensitive
        ({"url": f"{BASE}/ValueSet/cp"}, set()),  # exact, not a prefix
        ({"url": "urn:oid:1.2.250.1.213.1.1.5.1"}, {"vs-oid"}),
        ({"url": f"{BASE}/ValueSet/cpts,{BASE}"}, {"vs-cpts", "vs-base"}),
        # :below: the URL and everything under it.
        ({"url:below": f"{BASE}/ValueSet/cpts"}, {"vs-cpts", "vs-pathways"}),
        ({"url:below": f"{BASE}/ValueSet"}, {"vs-cpts", "vs-pathways", "vs-other"}),
        ({"url:below": BASE}, {"vs-cpts", "vs-pathways", "vs-other", "vs-base"}),
        ({"url:below": "urn:oid:1.2.250"}, {"vs-oid"}),
        # :above: the stored URLs the search URL is under (its path prefixes, itself included).
        (
            {"url:above": f"{BASE}/ValueSet/cpts/pathways/v2"},
            {"vs-pathways", "vs-cpts", "vs-base"},
        ),
        ({"url:above": f"{BASE}/ValueSet/other"}, {"vs-other", "vs-base"}),
        ({"url:above": "http://example.org"}, set()),
        ({"url:missing": "true"}, {"vs-none"}),
    ],
)
def test_uri(fhir_uris: httpx.Client, params: dict, expected: set[str]) -> None:
    assert found(fhir_uris, "/ValueSet", params) == expected


# Blood pressures (data.py): bp-1 systolic 150 / diastolic 90; bp-2 systolic 95 / diastolic 120
# (a systolic code and a value > 100 in two different components: never a match for "systolic
# > 100"). Lone systolics: sys-high 130, sys-low 90 (Observation.code and .value).
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"code-value-quantity": f"{LOINC}|8480-6$gt100"}, {"obs-sys-high"}),
        ({"code-value-quantity": "8480-6$lt100"}, {"obs-sys-low"}),
        ({"code-value-quantity": f"8480-6$130|{UCUM}|mm[Hg]"}, {"obs-sys-high"}),
        ({"code-value-quantity": "8480-6$130||mg"}, set()),
        ({"code-value-quantity": "85354-9$gt0"}, set()),  # the panels have no value of their own
        ({"component-code-value-quantity": f"{LOINC}|8480-6$gt100"}, {"obs-bp-1"}),
        ({"component-code-value-quantity": "8462-4$gt100"}, {"obs-bp-2"}),
        ({"component-code-value-quantity": "8480-6$95"}, {"obs-bp-2"}),
        ({"component-code-value-quantity": "8462-4$95"}, set()),
        (
            {"component-code-value-quantity": "8480-6$gt100,8462-4$gt100"},
            {"obs-bp-1", "obs-bp-2"},
        ),
        # ANDed criteria may each be met by a different component.
        (
            [
                ("component-code-value-quantity", "8480-6$lt100"),
                ("component-code-value-quantity", "8462-4$gt100"),
            ],
            {"obs-bp-2"},
        ),
        # combo: Observation.code/value or any component.
        ({"combo-code-value-quantity": "8480-6$gt100"}, {"obs-sys-high", "obs-bp-1"}),
        ({"combo-code-value-quantity": "8480-6$lt100"}, {"obs-sys-low", "obs-bp-2"}),
    ],
)
def test_composite(fhir_cpts: httpx.Client, params: Any, expected: set[str]) -> None:
    assert found(fhir_cpts, "/Observation", params) == expected


def test_composite_missing(fhir_cpts: httpx.Client) -> None:
    # Only the two panels have components.
    assert found(fhir_cpts, "/Observation", {"component-code-value-quantity:missing": "false"}) == {
        "obs-bp-1",
        "obs-bp-2",
    }
