"""IHE PAM France 2.11 ADT → Patient and Encounter, in the message's unit of work.

| event | what it does |
|---|---|
| A01, A04 | admission (inpatient, outpatient): a movement; Encounter in-progress |
| A05 | pre-admission: a movement; Encounter planned |
| A02 | transfer: a movement into a new unit; Encounter.location |
| A03 | discharge: a movement; Encounter finished, period.end, discharge disposition |
| A11, A12, A13 | cancel the admission, the transfer, the discharge (ZBE-1 names it) |
| Z99 | update of a movement (ZBE-4 UPDATE) |
| A08 | update of the patient (and of the stay's diagnoses) |
| A40 | merge of the patient of MRG-1 into the patient of PID |

The visit is found by its number (PV1-19 and its authority); the Encounter's state comes from
its movements (`movements.py`).
"""

from __future__ import annotations

import uuid
from typing import Any

from adapters.hl7v2 import diagnoses, organizations, patients
from adapters.hl7v2.er7 import Field, Segment
from adapters.hl7v2.errors import ErrorCode, MessageError
from adapters.hl7v2.identifiers import Authority
from adapters.hl7v2.movements import (
    CANCELS,
    DISCHARGE,
    Movement,
    apply,
    cancel,
    latest_active,
    movements_of,
    record,
)
from adapters.hl7v2.translation import Translation

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
UNKNOWN_CLASS = {"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "code": "UNK"}
_CLASSES = {
    "I": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "E": ("EMER", "emergency"),
    "R": ("AMB", "ambulatory"),  # recurring sessions (séances)
    "P": ("PRENC", "pre-admission"),
}
_DISPOSITION = "http://terminology.hl7.org/CodeSystem/v2-0112"
MOVEMENT_WITHOUT_ZBE = "https://cpts-fhir.org/fhir/sid/hl7v2-movement"
ACTIONS = frozenset({"INSERT", "UPDATE", "CANCEL"})
MOVEMENT_MESSAGES = frozenset({"A01", "A02", "A03", "A04", "A05", "A11", "A12", "A13", "Z99"})


def encounter_class(code: str) -> dict[str, Any] | None:
    """PV1-2 (patient class) as an Encounter.class Coding."""
    found = _CLASSES.get(code.upper())
    return {"system": ACT_CODE, "code": found[0], "display": found[1]} if found else None


class Zbe:
    """The movement segment, read where its fields are. Some engines send one empty field
    too many before ZBE-4 (the action then sits in ZBE-5): fields from ZBE-4 on are then read
    one place further."""

    def __init__(self, segment: Segment) -> None:
        self.segment = segment
        shifted = not segment(4) and segment(5).upper() in ACTIONS
        self.shift = 1 if shifted else 0

    def position(self, position: int) -> int:
        return position if position < 4 else position + self.shift

    def field(self, position: int) -> Field:
        return self.segment.field(self.position(position))

    def __call__(self, position: int, component: int = 1) -> str:
        return self.segment(self.position(position), component)

    @property
    def action(self) -> str:
        return self(4).upper() or "INSERT"


def movements_message(t: Translation) -> None:
    """A01, A02, A03, A04, A05, A11, A12, A13, Z99."""
    event = t.message.event.upper()
    pid, pv1 = t.message.require("PID"), t.message.require("PV1")
    segment = t.message.first("ZBE")
    zbe = Zbe(segment) if segment is not None and segment(1) else None
    patient_id = patients.upsert(t, pid)
    encounter = visit(t, pv1, patient_id)
    known = movements_of(encounter)
    action = zbe.action if zbe else ("CANCEL" if event in CANCELS else "INSERT")
    if action not in ACTIONS:
        raise MessageError(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            f"ZBE-4 {action!r} is not INSERT, UPDATE or CANCEL",
            zbe.segment.at(zbe.position(4)) if zbe else None,
        )
    if event in CANCELS or action == "CANCEL":
        if zbe is not None:
            target = _movement(t, zbe, pv1, _cancelled_event(event, zbe))
        else:
            target = latest_active(known, CANCELS.get(event, {event}))
            if target is None:
                raise MessageError(
                    ErrorCode.UNKNOWN_KEY,
                    f"{event}: the stay has no active movement to cancel, and without ZBE "
                    "the cancelled movement cannot be named",
                    pv1.at(19),
                )
        movements = cancel(known, target)
    else:
        moved = event if action == "INSERT" else (zbe(6).upper() if zbe and zbe(6) else event)
        movements = record(known, _movement(t, zbe, pv1, moved))
    apply(encounter, movements)
    diagnoses.record(t, t.message.all("DG1"), patient_id, encounter)
    t.fhir.write("Encounter", encounter["id"], encounter)


def _cancelled_event(event: str, zbe: Zbe) -> str:
    if zbe(6):
        return zbe(6).upper()
    return sorted(CANCELS[event])[0] if event in CANCELS else event


def _movement(t: Translation, zbe: Zbe | None, pv1: Segment, event: str) -> Movement:
    start = t.moment(zbe.segment, 2) if zbe else None
    start = start or t.occurred
    if zbe is not None:
        ei = zbe.field(1)
        identifier = t.authorities.identifier(ei(1), Authority.from_components(ei, 2), t.facility)
        ward, nursing = _unit(t, zbe.field(7)), _unit(t, zbe.field(8))
        nature = zbe(9) or None
    else:
        identifier = {
            "system": MOVEMENT_WITHOUT_ZBE,
            "value": f"{event}-{start.fhir if start else ''}",
        }
        ward, nursing, nature = None, None, None
    point_of_care = pv1(3, 1)
    if ward is None and nursing is None and point_of_care:
        ward = {"identifier": t.authorities.identifier(point_of_care, t.facility, t.facility)}
        ward["display"] = point_of_care
    admitted = t.moment(pv1, 44)
    disposition = None
    if event == DISCHARGE and pv1(36):
        disposition = {"coding": [{"system": _DISPOSITION, "code": pv1(36)}]}
    return Movement(
        identifier=identifier,
        event=event,
        status="active",
        start=start.fhir if start else None,
        encounter_class=encounter_class(pv1(2)),
        ward=ward,
        nursing_ward=nursing,
        nature=nature,
        admitted=admitted.fhir if admitted else None,
        disposition=disposition,
    )


def _unit(t: Translation, xon: Field) -> dict[str, Any] | None:
    """A care unit (XON: name, assigning authority, type UF, code) as a logical reference."""
    if not xon:
        return None
    unit: dict[str, Any] = {}
    if xon(10):
        authority = Authority.of(xon, 6)
        unit["identifier"] = t.authorities.identifier(xon(10), authority, t.facility)
    if xon(1):
        unit["display"] = xon(1)
    return unit or None


def visit(t: Translation, pv1: Segment, patient_id: str) -> dict[str, Any]:
    """The Encounter of the visit number PV1-19 (new when unknown), for `patient_id`."""
    number = pv1.field(19)
    if not number(1):
        raise MessageError(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "PV1-19 (visit number) is required to know which stay the message is about",
            pv1.at(19),
        )
    identifier = t.identifier(number, Authority.of(number, 4), "VN")
    token = f"{identifier.get('system', '')}|{identifier['value']}"
    found = t.fhir.find("Encounter", [("identifier", token)])
    encounter = t.fhir.read("Encounter", found) if found else None
    if encounter is None:
        encounter = {
            "resourceType": "Encounter",
            "id": str(uuid.uuid4()),
            "identifier": [identifier],
            "status": "unknown",
        }
    encounter["subject"] = {"reference": f"Patient/{patient_id}"}
    encounter["class"] = encounter_class(pv1(2)) or encounter.get("class") or UNKNOWN_CLASS
    provider = organizations.hospital(t)
    if provider:
        encounter["serviceProvider"] = provider
    return encounter


def update_message(t: Translation) -> None:
    """A08: the patient's identity; the diagnoses of a known stay."""
    patient_id = patients.upsert(t, t.message.require("PID"))
    pv1 = t.message.first("PV1")
    dg1 = t.message.all("DG1")
    if pv1 is None or not pv1(19) or not dg1:
        return
    encounter = visit(t, pv1, patient_id)
    diagnoses.record(t, dg1, patient_id, encounter)
    t.fhir.write("Encounter", encounter["id"], encounter)


def merge_message(t: Translation) -> None:
    """A40: the patient of PID survives, the one of MRG-1 is merged into it."""
    surviving_id = patients.upsert(t, t.message.require("PID"))
    patients.merge(t, surviving_id, t.message.require("MRG"))
