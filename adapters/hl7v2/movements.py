"""Movements (IHE PAM France: admission, transfer, discharge... each with its ZBE-1 id) and the
Encounter they make.

Each movement is kept on its Encounter, in the extension
`https://cpts-fhir.org/fhir/StructureDefinition/encounter-movement` (its id, trigger event,
status active or cancelled, date, units, class, discharge disposition). The Encounter's
status, period, class, locations and discharge disposition are then recomputed from the
active movements in date order, every time one is added, updated or cancelled. So:

- a movement received twice is the same movement (same id): nothing changes the second time;
- a cancellation (A11, A12, A13, or ZBE-4 CANCEL) marks exactly that movement cancelled and
  the Encounter is what the other movements make it (A13 reopens the stay, A11 cancels it);
- order does not matter: a discharge received before its admission gives a finished
  Encounter, and the late admission only adds the start of the stay; a cancellation received
  before the movement it cancels is kept, and the movement arrives cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

MOVEMENT = "https://cpts-fhir.org/fhir/StructureDefinition/encounter-movement"
V2_0003 = "http://terminology.hl7.org/CodeSystem/v2-0003"
ACTIVE, CANCELLED = "active", "cancelled"
ADMISSIONS = frozenset({"A01", "A04"})
PRE_ADMISSION = "A05"
TRANSFER = "A02"
DISCHARGE = "A03"
MOVEMENT_EVENTS = ADMISSIONS | {PRE_ADMISSION, TRANSFER, DISCHARGE}
# The movement event each cancellation reverses.
CANCELS = {"A11": ADMISSIONS | {PRE_ADMISSION}, "A12": {TRANSFER}, "A13": {DISCHARGE}}


@dataclass(frozen=True)
class Movement:
    identifier: dict[str, Any]
    event: str
    status: str
    start: str | None = None  # FHIR dateTime
    encounter_class: dict[str, Any] | None = None
    ward: dict[str, Any] | None = None  # medical responsibility (ZBE-7)
    nursing_ward: dict[str, Any] | None = None  # care responsibility (ZBE-8)
    nature: str | None = None  # ZBE-9
    admitted: str | None = None  # PV1-44
    disposition: dict[str, Any] | None = None  # PV1-36, of a discharge

    @property
    def key(self) -> tuple[str | None, str]:
        return self.identifier.get("system"), self.identifier["value"]

    @property
    def unit(self) -> dict[str, Any] | None:
        return self.ward or self.nursing_ward

    def to_extension(self) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [
            {"url": "identifier", "valueIdentifier": self.identifier},
            {"url": "event", "valueCoding": {"system": V2_0003, "code": self.event}},
            {"url": "status", "valueCode": self.status},
        ]
        optional = (
            ("start", "valueDateTime", self.start),
            ("class", "valueCoding", self.encounter_class),
            ("ward", "valueReference", self.ward),
            ("nursingWard", "valueReference", self.nursing_ward),
            ("nature", "valueCode", self.nature),
            ("admitted", "valueDateTime", self.admitted),
            ("dischargeDisposition", "valueCodeableConcept", self.disposition),
        )
        parts += [{"url": url, key: value} for url, key, value in optional if value]
        return {"url": MOVEMENT, "extension": parts}

    @classmethod
    def from_extension(cls, extension: dict[str, Any]) -> Movement:
        values = {
            part["url"]: next(v for k, v in part.items() if k.startswith("value"))
            for part in extension.get("extension", [])
        }
        return cls(
            identifier=values["identifier"],
            event=values["event"]["code"],
            status=values["status"],
            start=values.get("start"),
            encounter_class=values.get("class"),
            ward=values.get("ward"),
            nursing_ward=values.get("nursingWard"),
            nature=values.get("nature"),
            admitted=values.get("admitted"),
            disposition=values.get("dischargeDisposition"),
        )


def movements_of(encounter: dict[str, Any]) -> list[Movement]:
    return [
        Movement.from_extension(e) for e in encounter.get("extension", []) if e["url"] == MOVEMENT
    ]


def record(movements: list[Movement], movement: Movement) -> list[Movement]:
    """Add a movement or replace the one with its id; a cancelled movement stays cancelled."""
    for index, known in enumerate(movements):
        if known.key == movement.key:
            kept = replace(movement, status=CANCELLED) if known.status == CANCELLED else movement
            return [*movements[:index], kept, *movements[index + 1 :]]
    return [*movements, movement]


def cancel(movements: list[Movement], movement: Movement) -> list[Movement]:
    """Cancel the movement with this id, keeping what is known of it; an unknown one is kept
    cancelled, so that it arrives cancelled if it comes later."""
    for index, known in enumerate(movements):
        if known.key == movement.key:
            return [*movements[:index], replace(known, status=CANCELLED), *movements[index + 1 :]]
    return [*movements, replace(movement, status=CANCELLED)]


def latest_active(movements: list[Movement], events: set[str] | frozenset[str]) -> Movement | None:
    candidates = [m for m in _ordered(movements) if m.status == ACTIVE and m.event in events]
    return candidates[-1] if candidates else None


def _ordered(movements: list[Movement]) -> list[Movement]:
    """In date order; movements of the same date keep the order they were received in."""
    return [m for _, _, m in sorted((_when(m.start), i, m) for i, m in enumerate(movements))]


def _when(value: str | None) -> datetime:
    if not value:
        return datetime.max.replace(tzinfo=UTC)
    if len(value) <= 10:  # a date: its first moment
        value = (value + "-01-01")[:10] + "T00:00:00+00:00"
    return datetime.fromisoformat(value)


def apply(encounter: dict[str, Any], movements: list[Movement]) -> dict[str, Any]:
    """The Encounter with its movements recorded and what they make of it."""
    active = [m for m in _ordered(movements) if m.status == ACTIVE]
    discharge = next((m for m in reversed(active) if m.event == DISCHARGE), None)
    admissions = [m for m in active if m.event in ADMISSIONS]
    present = admissions or [m for m in active if m.event == TRANSFER]
    planned = [m for m in active if m.event == PRE_ADMISSION]
    if discharge is not None:
        status = "finished"
    elif present:
        status = "in-progress"
    elif planned:
        status = "planned"
    elif movements:
        status = "cancelled"
    else:
        status = encounter.get("status", "unknown")
    encounter["status"] = status

    period: dict[str, str] = {}
    first = (admissions or planned or [])[:1]
    start = first[0].start if first else next((m.admitted for m in active if m.admitted), None)
    if start:
        period["start"] = start
    if discharge is not None and discharge.start:
        period["end"] = discharge.start
    if period:
        encounter["period"] = period
    else:
        encounter.pop("period", None)

    classes = [m.encounter_class for m in active if m.encounter_class]
    if classes:
        encounter["class"] = classes[-1]

    encounter["location"] = _locations(active, discharge, status)
    if not encounter["location"]:
        del encounter["location"]

    hospitalization = {
        k: v for k, v in encounter.get("hospitalization", {}).items() if k != "dischargeDisposition"
    }
    if discharge is not None and discharge.disposition:
        hospitalization["dischargeDisposition"] = discharge.disposition
    if hospitalization:
        encounter["hospitalization"] = hospitalization
    else:
        encounter.pop("hospitalization", None)

    others = [e for e in encounter.get("extension", []) if e["url"] != MOVEMENT]
    encounter["extension"] = [*others, *(m.to_extension() for m in movements)]
    return encounter


def _locations(
    active: list[Movement], discharge: Movement | None, status: str
) -> list[dict[str, Any]]:
    """One location per movement into a unit, each ending when the next begins. The unit of
    a discharge is only used when nothing else says where the patient was."""
    stays = [m for m in active if m.unit and m.event != DISCHARGE]
    if not stays and discharge is not None and discharge.unit:
        stays = [discharge]
    locations = []
    for index, movement in enumerate(stays):
        location: dict[str, Any] = {"location": movement.unit}
        period = {}
        if movement.start:
            period["start"] = movement.start
        end = stays[index + 1].start if index + 1 < len(stays) else None
        if end is None and discharge is not None:
            end = discharge.start
        if end:
            period["end"] = end
        if status == "planned":
            location["status"] = "planned"
        else:
            ended = index + 1 < len(stays) or discharge is not None
            location["status"] = "completed" if ended else "active"
        if period:
            location["period"] = period
        locations.append(location)
    return locations
