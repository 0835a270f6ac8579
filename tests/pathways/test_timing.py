"""Deadlines in Europe/Paris local time (pathways/timing.py), every expectation computed by hand
from the calendar: daylight saving starts on 29 March 2026 and 28 March 2027 (02:00 → 03:00)
and ends on 25 October 2026 (03:00 → 02:00)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pathways.timing import PARIS, DurationError, due_date, duration_unit, fhir_datetime

WINTER = timezone(timedelta(hours=1))


def within(value: float, code: str) -> dict:
    return {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}


@pytest.mark.parametrize(
    ("anchor", "duration", "due"),
    [
        # The day of discharge (0 d) ends with that local day.
        ("2026-11-23T15:00:00+01:00", within(0, "d"), "2026-11-23T23:59:59+01:00"),
        # Within 7 days of a Monday 15:00: the end of the following Monday.
        ("2026-11-23T15:00:00+01:00", within(7, "d"), "2026-11-30T23:59:59+01:00"),
        # A UTC anchor late in the evening is already the next local day in Paris.
        ("2026-11-23T23:30:00+00:00", within(1, "d"), "2026-11-25T23:59:59+01:00"),
        # Calendar days across the spring change: the local day, whatever the clock did.
        ("2026-03-28T15:00:00+01:00", within(7, "d"), "2026-04-04T23:59:59+02:00"),
        ("2026-10-24T10:00:00+02:00", within(2, "d"), "2026-10-26T23:59:59+01:00"),
        # Weeks are seven local days.
        ("2026-03-23T09:00:00+01:00", within(2, "wk"), "2026-04-06T23:59:59+02:00"),
        # Elapsed time: "within 48 h" of 15:00 is 15:00 two days later, out of a clock change.
        ("2026-11-23T15:00:00+01:00", within(48, "h"), "2026-11-25T15:00:00+01:00"),
        ("2026-11-23T15:00:00+01:00", within(90, "min"), "2026-11-23T16:30:00+01:00"),
        # Months keep the day of the month, or the last day of a shorter month.
        ("2027-01-31T10:00:00+01:00", within(1, "mo"), "2027-02-28T23:59:59+01:00"),
        ("2028-01-31T10:00:00+01:00", within(1, "mo"), "2028-02-29T23:59:59+01:00"),
        ("2026-08-31T10:00:00+02:00", within(3, "mo"), "2026-11-30T23:59:59+01:00"),
        ("2026-11-23T15:00:00+01:00", within(2, "mo"), "2027-01-23T23:59:59+01:00"),
        # A year from 29 February is 28 February.
        ("2028-02-29T12:00:00+01:00", within(1, "a"), "2029-02-28T23:59:59+01:00"),
    ],
)
def test_due_date(anchor: str, duration: dict, due: str) -> None:
    result = due_date(datetime.fromisoformat(anchor), duration)
    assert fhir_datetime(result) == due
    assert result.tzinfo is not None


@pytest.mark.parametrize(
    ("anchor", "due"),
    [
        # Across the spring change: 48 h after Saturday 15:00 CET is Monday 16:00 CEST.
        ("2026-03-28T15:00:00+01:00", "2026-03-30T16:00:00+02:00"),
        # Across the autumn change: 48 h after Saturday 15:00 CEST is Monday 14:00 CET.
        ("2026-10-24T15:00:00+02:00", "2026-10-26T14:00:00+01:00"),
    ],
)
def test_hours_are_elapsed_time_across_a_clock_change(anchor: str, due: str) -> None:
    start = datetime.fromisoformat(anchor)
    result = due_date(start, within(48, "h"))
    assert result - start == timedelta(hours=48)
    assert fhir_datetime(result) == due


def test_due_date_is_the_same_moment_whatever_the_zone_of_the_anchor() -> None:
    paris = datetime(2026, 3, 28, 15, 0, tzinfo=WINTER)
    utc = paris.astimezone(UTC)
    assert due_date(paris, within(48, "h")) == due_date(utc, within(48, "h"))
    assert due_date(paris, within(7, "d")) == due_date(utc, within(7, "d"))


def test_end_of_day_is_local() -> None:
    due = due_date(datetime(2026, 7, 1, 8, 0, tzinfo=UTC), within(0, "d"))
    assert due.astimezone(PARIS).time().isoformat() == "23:59:59"
    assert due.astimezone(UTC).isoformat() == "2026-07-01T21:59:59+00:00"


@pytest.mark.parametrize(
    "duration",
    [
        {"value": 7},  # no unit
        {"code": "d"},  # no value
        within(2, "s2"),
        within(1.5, "d"),  # calendar units count whole days
        within(1.5, "mo"),
    ],
)
def test_unsupported_durations(duration: dict) -> None:
    with pytest.raises(DurationError):
        due_date(datetime(2026, 11, 23, 15, tzinfo=WINTER), duration)


def test_an_anchor_needs_a_zone() -> None:
    with pytest.raises(ValueError, match="timezone"):
        due_date(datetime(2026, 11, 23, 15), within(7, "d"))


def test_duration_unit_reads_code_then_unit() -> None:
    assert duration_unit({"value": 48, "code": "h"}) == (48.0, "h")
    assert duration_unit({"value": 2, "unit": "wk"}) == (2.0, "wk")


def test_fhir_datetime_has_seconds_and_the_paris_offset() -> None:
    assert fhir_datetime(datetime(2026, 11, 30, 22, 59, 59, 500, tzinfo=UTC)) == (
        "2026-11-30T23:59:59+01:00"
    )
    assert fhir_datetime(datetime(2026, 6, 30, 12, 0, tzinfo=UTC)) == "2026-06-30T14:00:00+02:00"
