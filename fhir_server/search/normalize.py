"""Normal forms shared by the index (write side) and the queries (read side), so that both
sides agree: strings without case or accents, dates as half-open UTC ranges."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from functools import cache, lru_cache
from zoneinfo import ZoneInfo

MAX_STRING = 255
# Open ends of a range: a Period without start or end, a search without bound.
MIN_DATE = datetime(1, 1, 1, tzinfo=UTC)
MAX_DATE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

_DATE = re.compile(
    r"(?P<year>\d{4})(-(?P<month>\d{2})(-(?P<day>\d{2})"
    r"(T(?P<hour>\d{2}):(?P<minute>\d{2})(:(?P<second>\d{2})(?P<fraction>\.\d+)?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


@lru_cache(maxsize=8192)
def normalize_string(value: str) -> str:
    """Lower case without accents or repeated spaces: "Hélène  D" → "helene d". Kept for the
    texts that recur from write to write (displays of codes, city names, the audit trail's)."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())[:MAX_STRING]


@cache
def zone(name: str) -> tzinfo:
    return ZoneInfo(name)


def date_range(value: str, local_zone: tzinfo = UTC) -> tuple[datetime, datetime]:
    """The half-open UTC range [low, high) a FHIR date, dateTime or instant stands for, given
    its precision: "2026" is the whole year, "2026-11-24T10:00" that minute. Values without a
    time zone are read in `local_zone`. Raises ValueError on malformed text."""
    match = _DATE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not a FHIR date/dateTime: {value!r}")
    parts = match.groupdict()
    year = int(parts["year"])
    month = int(parts["month"] or 1)
    day = int(parts["day"] or 1)
    hour = int(parts["hour"] or 0)
    minute = int(parts["minute"] or 0)
    second = int(parts["second"] or 0)
    fraction = parts["fraction"] or ""
    micro = int(Decimal(fraction) * 1_000_000) if fraction else 0
    tz = local_zone
    if parts["zone"]:
        tz = UTC if parts["zone"] == "Z" else _offset(parts["zone"])
    low = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    if parts["month"] is None:
        high = low.replace(year=year + 1) if year < 9999 else MAX_DATE
    elif parts["day"] is None:
        high = low.replace(year=year + 1, month=1) if month == 12 else low.replace(month=month + 1)
    elif parts["hour"] is None:
        high = datetime.combine(date(year, month, day) + timedelta(days=1), low.timetz())
    elif parts["second"] is None:
        high = low + timedelta(minutes=1)
    elif not fraction:
        high = low + timedelta(seconds=1)
    else:
        high = low + timedelta(microseconds=10 ** (6 - min(len(fraction) - 1, 6)))
    return low.astimezone(UTC), high.astimezone(UTC)


def _offset(text: str) -> tzinfo:
    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[4:6])
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def number_range(text: str) -> tuple[Decimal, Decimal]:
    """The range of values a search number stands for given its precision (search.html#number):
    "100" is [99.5, 100.5), "1e2" likewise, "100.00" is [99.995, 100.005)."""
    value = Decimal(text)
    exponent = value.as_tuple().exponent
    half = Decimal(5).scaleb(exponent - 1) if isinstance(exponent, int) else Decimal(0)
    return value - half, value + half
