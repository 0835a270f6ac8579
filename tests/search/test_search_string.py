"""String search (search.html#string) on HumanName and Address: starts-with by default, case and
accent insensitive; `:exact`; `:contains`; `:missing`. Data: tests/search/data.py."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer
from tests.search.data import cpts, found, loaded


@pytest.fixture
def fhir_cpts(live: LiveServer) -> Iterator[httpx.Client]:
    yield from loaded(live, "cpts", cpts)


# Patients: 1 Dupont Hélène Marie (text "Dupont, Hélène"), 2 Durand Helene, 3 Lefèvre
# Jean-Pierre, 4 Martin Paul, 5 Curie Marie, 6 Éluard Paul.
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # Default: the start of a name part, without case or accents.
        ({"name": "helene"}, {"1", "2"}),
        ({"name": "HEL"}, {"1", "2"}),
        ({"name": "hél"}, {"1", "2"}),
        ({"name": "he\u0301lene"}, {"1", "2"}),  # the accent as a combining character
        ({"given": "helene"}, {"1", "2"}),
        ({"family": "helene"}, set()),
        ({"name": "dup"}, {"1"}),
        ({"name": "pont"}, set()),  # not the start of any part
        ({"name": "marie"}, {"1", "5"}),
        ({"family": "lefevre"}, {"3"}),
        ({"family": "LEFÈ"}, {"3"}),
        ({"family": "eluard"}, {"6"}),  # "Éluard"
        ({"given": "jean-p"}, {"3"}),
        # :exact compares the whole value, case and accents included.
        ({"name:exact": "Hélène"}, {"1"}),
        ({"name:exact": "Helene"}, {"2"}),
        ({"name:exact": "hélène"}, set()),
        ({"name:exact": "Hél"}, set()),
        ({"family:exact": "Eluard"}, set()),
        ({"family:exact": "Éluard"}, {"6"}),
        ({"given:exact": "Marie"}, {"1", "5"}),
        # :contains anywhere in a part, without case or accents.
        ({"name:contains": "pont"}, {"1"}),
        ({"name:contains": "ELE"}, {"1", "2"}),  # hELEne; "lefevre" and "eluard" have no "ele"
        ({"family:contains": "fèv"}, {"3"}),
        ({"family:contains": "fev"}, {"3"}),
        ({"given:contains": "pierre"}, {"3"}),
        ({"family:contains": "%"}, set()),  # LIKE wildcards are literal
        ({"family:contains": "_"}, set()),
    ],
)
def test_human_name(fhir_cpts: httpx.Client, params: dict, expected: set[str]) -> None:
    assert found(fhir_cpts, "/Patient", params) == expected


def test_comma_in_value_is_or_unless_escaped(fhir_cpts: httpx.Client) -> None:
    # "dupont, hél" above is two values: "dupont" matches 1; " hél" (leading space) is
    # normalised to "hél" and matches 1 and 2.
    assert found(fhir_cpts, "/Patient", {"name": "dupont, hél"}) == {"1", "2"}
    # Escaped, the comma is part of the value: only the text "Dupont, Hélène" starts so.
    assert found(fhir_cpts, "/Patient", {"name": "dupont\\, hél"}) == {"1"}
    assert found(fhir_cpts, "/Patient", {"name": "Dupont,Curie"}) == {"1", "5"}
    assert found(fhir_cpts, "/Patient", {"name": "Dupont\\,Curie"}) == set()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # Repeated parameters are ANDed, each may be met by a different value.
        ([("given", "helene"), ("given", "marie")], {"1"}),  # Hélène Marie only
        ([("given", "helene,marie")], {"1", "2", "5"}),  # ORed
        ([("given", "paul"), ("given", "marie")], set()),
        ([("given", "paul"), ("family", "martin")], {"4"}),
        ([("name", "helene,paul"), ("gender", "male")], {"4"}),  # {1, 2, 4, 6} and {3, 4}
        ([("name", "helene"), ("name:exact", "Helene")], {"2"}),
    ],
)
def test_and_or(fhir_cpts: httpx.Client, params: list, expected: set[str]) -> None:
    assert found(fhir_cpts, "/Patient", params) == expected


# Cities: 1 Saint-Étienne (postal code 42000), 2 Lyon, 3 Villeurbanne, 4 none, 5 Paris, 6 LYON.
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"address-city": "lyon"}, {"2", "6"}),
        ({"address-city": "LY"}, {"2", "6"}),
        ({"address-city": "saint-etienne"}, {"1"}),
        ({"address-city": "SAINT-ÉT"}, {"1"}),
        ({"address-city": "etienne"}, set()),
        ({"address-city:contains": "ÉTIENNE"}, {"1"}),
        ({"address-city:contains": "ur"}, {"3"}),  # VilleURbanne
        ({"address-city:exact": "Lyon"}, {"2"}),
        ({"address-city:exact": "LYON"}, {"6"}),
        ({"address-city:exact": "lyon"}, set()),
        ({"address": "42"}, {"1"}),  # `address` covers every part, the postal code too
        ({"address": "par"}, {"5"}),
        ({"address-city:missing": "true"}, {"4"}),
        ({"address-city:missing": "false"}, {"1", "2", "3", "5", "6"}),
        ({"address:missing": "true"}, {"4"}),
    ],
)
def test_address(fhir_cpts: httpx.Client, params: dict, expected: set[str]) -> None:
    assert found(fhir_cpts, "/Patient", params) == expected


def test_missing_on_names(fhir_cpts: httpx.Client) -> None:
    assert found(fhir_cpts, "/Patient", {"name:missing": "true"}) == set()
    assert found(fhir_cpts, "/Patient", {"family:missing": "false"}) == set("123456")
    # Practitioners have names, the Group has none (`name` is not a Group parameter anyway).
    assert found(fhir_cpts, "/Practitioner", {"given:missing": "false"}) == {
        "gp-1",
        "idel-1",
        "idel-2",
    }


def test_string_on_other_types(fhir_cpts: httpx.Client) -> None:
    # Practitioner gp-1 is a Martin too: each type searches its own resources.
    assert found(fhir_cpts, "/Patient", {"family": "martin"}) == {"4"}
    assert found(fhir_cpts, "/Practitioner", {"family": "martin"}) == {"gp-1"}
    assert found(fhir_cpts, "/Practitioner", {"name": "lu"}) == {"idel-1"}  # Lucas


def test_exact_compares_the_indexed_length(fhir: httpx.Client) -> None:
    """Texts are indexed up to 255 characters: `:exact` on a longer value compares those
    (the stored normalization of a cut text may differ from that of the cut value)."""
    name = "Maison de santé pluriprofessionnelle du Val " + "de Saône " * 40
    created = fhir.post("/Location", json={"resourceType": "Location", "name": name})
    assert created.status_code == 201, created.text
    location = created.json()["id"]
    assert found(fhir, "/Location", {"name:exact": name}) == {location}
    assert found(fhir, "/Location", {"name:exact": name[:255]}) == {location}
    assert found(fhir, "/Location", {"name:exact": name[:254]}) == set()
    assert found(fhir, "/Location", {"name:exact": name.upper()}) == set()
