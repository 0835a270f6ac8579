"""Deadlines of pathway steps, computed in the local time of French care (Europe/Paris).

A step is due "within" a FHIR Duration of its anchor (the trigger, or the completion of the
steps it depends on). Calendar units (days, weeks, months, years) count local calendar days and
end with the local day: a GP visit "within 7 days" of a discharge on Monday 15:00 is due by
the end of the following Monday, whatever daylight saving did meanwhile, and "the day of
discharge" (0 days) is the end of that day. Hours and minutes are elapsed time: "within 48 h"
of 15:00 is 15:00 two days later.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

PARIS = ZoneInfo("Europe/Paris")

_ELAPSED = {"min": "minutes", "h": "hours", "s": "seconds"}
_CALENDAR = {"d": "days", "wk": "weeks", "mo": "months", "a": "years"}
_END_OF_DAY = time(23, 59, 59)


class DurationError(ValueError):
    """A Duration this server cannot turn into a deadline (missing value, unknown unit)."""


def duration_unit(duration: dict[str, Any]) -> tuple[float, str]:
    """The value and UCUM code of a FHIR Duration (`{"value": 7, "code": "d", ...}`)."""
    value, code = duration.get("value"), duration.get("code") or duration.get("unit")
    if value is None or code not in {**_ELAPSED, **_CALENDAR}:
        raise DurationError(
            f"unsupported duration {duration!r}: use a value with min, h, d, wk, mo or a"
        )
    return float(value), code


def due_date(anchor: datetime, within: dict[str, Any]) -> datetime:
    """When a step anchored at `anchor` (timezone-aware) and due `within` a Duration is due,
    as an aware datetime in Europe/Paris."""
    if anchor.tzinfo is None:
        raise ValueError("the anchor of a deadline needs a timezone")
    value, code = duration_unit(within)
    local = anchor.astimezone(PARIS)
    if code in _ELAPSED:
        return (anchor.astimezone(UTC) + timedelta(**{_ELAPSED[code]: value})).astimezone(PARIS)
    if value != int(value):
        raise DurationError(
            f"calendar durations count whole days, weeks, months or years: {within!r}"
        )
    day = local.date() + relativedelta(**{_CALENDAR[code]: int(value)})
    return datetime.combine(day, _END_OF_DAY, PARIS)


def fhir_datetime(moment: datetime) -> str:
    """A FHIR dateTime with seconds and the Paris offset (`2026-11-30T23:59:59+01:00`)."""
    return moment.astimezone(PARIS).isoformat(timespec="seconds")
