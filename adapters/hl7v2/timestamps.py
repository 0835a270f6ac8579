"""HL7 v2 times (DTM: YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]) as FHIR dates and dateTimes.

The precision of the message is kept (a year stays a year); a time without an offset is the
hospital's local time, the server's time zone (FHIR_TIMEZONE, Europe/Paris by default), with
its summer time. FHIR needs seconds and a zone on a time: minutes are completed with :00.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

from adapters.hl7v2.errors import ErrorCode, Location, MessageError

_DTM = re.compile(
    r"(?P<year>\d{4})(?P<month>\d{2})?(?P<day>\d{2})?"
    r"(?:(?P<hour>\d{2})(?P<minute>\d{2})?(?P<second>\d{2})?(?:\.(?P<fraction>\d{1,4}))?)?"
    r"(?P<offset>[+-]\d{4})?"
)


@dataclass(frozen=True)
class Moment:
    """A parsed HL7 time: its FHIR text and, for ordering, an aware datetime."""

    fhir: str
    at: datetime
    has_time: bool

    @property
    def date(self) -> str:
        """The FHIR date (the day, or less when that is all the message said)."""
        return self.fhir[:10]

    @property
    def instant(self) -> str:
        """A FHIR instant: a day without a time is its local midnight."""
        return self.fhir if self.has_time else self.at.isoformat()


def moment(value: str, zone: tzinfo, where: Location | None = None) -> Moment | None:
    """The time `value` names, None when empty; a MessageError when it is not a time."""
    if not value:
        return None
    match = _DTM.fullmatch(value.strip())
    if match is None:
        raise MessageError(ErrorCode.DATA_TYPE, f"{value!r} is not an HL7 date/time", where)
    parts = match.groupdict()
    try:
        offset = parts["offset"]
        local = zone
        if offset:
            sign = 1 if offset[0] == "+" else -1
            delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
            local = timezone(sign * delta)
        at = datetime(
            int(parts["year"]),
            int(parts["month"] or 1),
            int(parts["day"] or 1),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
            int((parts["fraction"] or "0").ljust(6, "0")),
            tzinfo=local,
        )
    except ValueError:
        raise MessageError(ErrorCode.DATA_TYPE, f"{value!r} is not a valid date", where) from None
    if parts["hour"] is None:
        text = parts["year"]
        if parts["month"]:
            text += f"-{parts['month']}"
            if parts["day"]:
                text += f"-{parts['day']}"
        return Moment(text, at, False)
    stamp = at.isoformat(timespec="milliseconds" if parts["fraction"] else "seconds")
    return Moment(stamp, at, True)
