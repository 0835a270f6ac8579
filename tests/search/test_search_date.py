"""Date search (search.html#date, #prefix): every prefix against stored values of every precision,
with and without time zone, and Periods with open ends. Dates without a zone, stored or searched,
are read in Europe/Paris (UTC+1 in November and January).

A stored value and a search value are both ranges, half-open here [low, high). With the search
range S = [sl, sh) and a stored range T = [l, h), search.html#prefix reads:

    eq  S contains T              l >= sl and h <= sh
    ne  not eq
    gt  T reaches above S         h > sh
    lt  T reaches below S         l < sl
    ge  gt or eq                  le  lt or eq
    sa  T starts after S          l >= sh
    eb  T ends before S           h <= sl
    ap  T overlaps S widened by 10 % of the distance to now (at least a day); the `ap`
        expectations below hold while now is within about nine years of 2026-11-24 (after
        that, K would come within 10 % of the day searched)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.search.data import found, loaded


def _obs(id_: str, **effective: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"text": "date test"},
        **effective,
    }


# Each stored value, and its range in UTC.
DATES = [
    _obs("A", effectiveDateTime="2026"),  # [2025-12-31T23:00, 2026-12-31T23:00)
    _obs("B", effectiveDateTime="2026-11"),  # [2026-10-31T23:00, 2026-11-30T23:00)
    _obs("C", effectiveDateTime="2026-11-24"),  # [11-23T23:00, 11-24T23:00)
    _obs("D", effectiveDateTime="2026-11-24T10:00:00+01:00"),  # [11-24T09:00:00, 09:00:01)
    _obs("E", effectiveDateTime="2026-11-24T10:00:30Z"),  # [11-24T10:00:30, 10:00:31)
    # 23:30 UTC is already 00:30 on the 25th in Paris: outside the Paris day 2026-11-24.
    _obs("F", effectiveDateTime="2026-11-24T23:30:00Z"),  # [11-24T23:30:00, 23:30:01)
    # 00:30 in Paris is still the 23rd in UTC: inside the Paris day 2026-11-24.
    _obs("G", effectiveDateTime="2026-11-24T00:30:00+01:00"),  # [11-23T23:30:00, 23:30:01)
    _obs("H", effectivePeriod={"start": "2026-11-20"}),  # [11-19T23:00, ∞)
    _obs("I", effectivePeriod={"end": "2026-11-24T12:00:00+01:00"}),  # (-∞, 11-24T11:00:01)
    # [11-22T23:00, 11-25T23:00)
    _obs("J", effectivePeriod={"start": "2026-11-23", "end": "2026-11-25"}),
    # New Year's Eve 23:30 UTC is New Year's Day 00:30 in Paris: inside the Paris year 2026.
    _obs("K", effectiveDateTime="2025-12-31T23:30:00Z"),  # [2025-12-31T23:30:00, 23:30:01)
    _obs("L", effectiveDateTime="2020-01-01"),  # [2019-12-31T23:00, 2020-01-01T23:00)
    _obs("M"),  # no date at all: never matched by a prefix, only by :missing=true
]
EVERY = set("ABCDEFGHIJKL")


@pytest.fixture
def fhir_dates(live: LiveServer) -> Iterator[httpx.Client]:
    yield from loaded(live, "dates", lambda: DATES)


def check(client: httpx.Client, value: str, expected: str) -> None:
    assert found(client, "/Observation", {"date": value}) == set(expected), value


# 2026 = [2025-12-31T23:00Z, 2026-12-31T23:00Z): B..G, J and K lie inside; A is the same range;
# H starts inside and never ends; I has no start; L is six years before.
@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", "ABCDEFGJK"),
        ("eq", "ABCDEFGJK"),
        ("ne", "HIL"),
        ("gt", "H"),
        ("lt", "IL"),
        ("ge", "ABCDEFGHJK"),
        ("le", "ABCDEFGIJKL"),
        ("sa", ""),
        ("eb", "L"),
        ("ap", "ABCDEFGHIJK"),
    ],
)
def test_year(fhir_dates: httpx.Client, prefix: str, expected: str) -> None:
    check(fhir_dates, f"{prefix}2026", expected)


# 2026-11 = [2026-10-31T23:00Z, 2026-11-30T23:00Z): A contains it (reaches above and below);
# K (New Year 2026) and L end before it.
@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("eq", "BCDEFGJ"),
        ("ne", "AHIKL"),
        ("gt", "AH"),
        ("lt", "AIKL"),
        ("ge", "ABCDEFGHJ"),
        ("le", "ABCDEFGIJKL"),
        ("sa", ""),
        ("eb", "KL"),
    ],
)
def test_month(fhir_dates: httpx.Client, prefix: str, expected: str) -> None:
    check(fhir_dates, f"{prefix}2026-11", expected)


# 2026-11-24 = [11-23T23:00Z, 11-24T23:00Z), the Paris day: C, D, E, G inside; F (23:30Z) starts
# after it; A, B, H, J contain it; I ends inside it but starts before.
@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("eq", "CDEG"),
        ("ne", "ABFHIJKL"),
        ("gt", "ABFHJ"),
        ("lt", "ABHIJKL"),
        ("ge", "ABCDEFGHJ"),
        ("le", "ABCDEGHIJKL"),
        ("sa", "F"),
        ("eb", "KL"),
        ("ap", "ABCDEFGHIJ"),  # widened by a day at least; K and L are a year and more away
    ],
)
def test_day(fhir_dates: httpx.Client, prefix: str, expected: str) -> None:
    check(fhir_dates, f"{prefix}2026-11-24", expected)


def test_day_in_utc_is_another_range(fhir_dates: httpx.Client) -> None:
    """A day has no zone in FHIR; the minute range of a UTC midnight shows the shift: 2026-11-24
    00:00Z is 01:00 in Paris, after G (00:30 Paris) and within C, H, I, J, B, A."""
    check(fhir_dates, "2026-11-24T00:00Z", "")
    check(fhir_dates, "lt2026-11-24T00:00Z", "ABCGHIJKL")


# 2026-11-24T10:00 without zone = 10:00 in Paris = [09:00Z, 09:01Z): only D (09:00:00Z) inside;
# E (10:00:30Z) and F after; G, K, L before; A, B, C, H, I, J span it.
@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("eq", "D"),
        ("ne", "ABCEFGHIJKL"),
        ("gt", "ABCEFHIJ"),
        ("lt", "ABCGHIJKL"),
        ("ge", "ABCDEFHIJ"),
        ("le", "ABCDGHIJKL"),
        ("sa", "EF"),
        ("eb", "GKL"),
    ],
)
def test_minute_local(fhir_dates: httpx.Client, prefix: str, expected: str) -> None:
    check(fhir_dates, f"{prefix}2026-11-24T10:00", expected)


# 2026-11-24T10:00Z = [10:00Z, 10:01Z): E (10:00:30Z) inside; D (09:00Z) now before it.
@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("eq", "E"),
        ("ne", "ABCDFGHIJKL"),
        ("gt", "ABCFHIJ"),
        ("lt", "ABCDGHIJKL"),
        ("ge", "ABCEFHIJ"),
        ("le", "ABCDEGHIJKL"),
        ("sa", "F"),
        ("eb", "DGKL"),
    ],
)
def test_minute_utc(fhir_dates: httpx.Client, prefix: str, expected: str) -> None:
    check(fhir_dates, f"{prefix}2026-11-24T10:00Z", expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Second precision, with an offset ("+" travels percent-encoded) or in Paris: D only.
        ("2026-11-24T10:00:00+01:00", "D"),
        ("2026-11-24T09:00:00Z", "D"),
        ("2026-11-24T10:00:00", "D"),
        ("sa2026-11-24T10:00:00+01:00", "EF"),
        ("eb2026-11-24T10:00:00+01:00", "GKL"),
        # E is 10:00:30Z, which is 05:00:30 at -05:00.
        ("2026-11-24T05:00:30-05:00", "E"),
        # A fraction narrows the range to its last digit: E is [10:00:30.000, 10:00:31.000).
        ("2026-11-24T10:00:30.5Z", ""),
        ("ge2026-11-24T10:00:30.5Z", "ABCEFHIJ"),
        # Both ends of H and I: H never ends, I never starts.
        ("gt9000", "H"),
        ("lt1000", "I"),
        # Two values are ORed: the Paris day, or the year 2020.
        ("2026-11-24,2020", "CDEGL"),
    ],
)
def test_precisions_and_zones(fhir_dates: httpx.Client, value: str, expected: str) -> None:
    check(fhir_dates, value, expected)


def test_and_makes_an_interval(fhir_dates: httpx.Client) -> None:
    """date=ge...&date=lt...: each criterion on its own (search.html#combining); a value that
    satisfies both need not be the same one, but each of these has one value."""
    params = [("date", "ge2026-11-24T09:00Z"), ("date", "lt2026-11-24T11:00Z")]
    # D (09:00:00Z) and E (10:00:30Z) lie inside; C, H, I, J, A, B span the interval (they both
    # reach above 09:00 and below 11:00).
    assert found(fhir_dates, "/Observation", params) == set("ABCDEHIJ")


def test_missing(fhir_dates: httpx.Client) -> None:
    assert found(fhir_dates, "/Observation", {"date:missing": "true"}) == {"M"}
    assert found(fhir_dates, "/Observation", {"date:missing": "false"}) == EVERY
