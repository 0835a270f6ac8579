"""DG1 → Condition (encounter diagnosis) referenced from Encounter.diagnosis.

ICD-10 codes (DG1-3 coding system I10, ICD10, CIM10...) are written in the FHIR ICD-10 system
with their dot (French engines send I500 for I50.0): the pathways recognise heart failure by
an I50.* diagnosis of a finished inpatient stay. Each diagnosis is one Condition per stay and
code (its id is derived from both, so a message received again changes nothing); DG1-21 = D
withdraws it (verification entered-in-error, and it leaves Encounter.diagnosis).
"""

from __future__ import annotations

import re
from typing import Any

from adapters.hl7v2.er7 import Segment
from adapters.hl7v2.translation import Translation

ICD10 = "http://hl7.org/fhir/sid/icd-10"
_ICD10_NAMES = frozenset({"I10", "ICD10", "ICD-10", "CIM10", "CIM-10", "CIM10FR", "I10P"})
_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
_ROLES = {"A": "AD", "F": "DD"}  # DG1-6: admitting, final (discharge)
_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
_ICD10_CODE = re.compile(r"([A-Z][0-9]{2})\.?([0-9A-Z+]*)")


def icd10(code: str) -> str:
    """An ICD-10 code with its dot: I500 → I50.0, I50 → I50."""
    match = _ICD10_CODE.fullmatch(code.upper().strip())
    if match is None:
        return code
    head, tail = match.groups()
    return f"{head}.{tail}" if tail else head


def record(
    t: Translation, segments: list[Segment], patient_id: str, encounter: dict[str, Any]
) -> None:
    """Write the Conditions of the DG1 segments and list them in Encounter.diagnosis."""
    diagnoses = list(encounter.get("diagnosis", []))
    for dg1 in segments:
        code, system_name = dg1(3, 1), dg1(3, 3).upper()
        if not code:
            continue
        coding: dict[str, Any] = {}
        if system_name in _ICD10_NAMES:
            coding["system"], code = ICD10, icd10(code)
        coding["code"] = code
        if dg1(3, 2) or dg1(4):
            coding["display"] = dg1(3, 2) or dg1(4)
        condition_id = _condition_id(encounter["id"], code)
        reference = f"Condition/{condition_id}"
        diagnoses = [d for d in diagnoses if d.get("condition", {}).get("reference") != reference]
        withdrawn = dg1(21).upper() == "D"
        condition: dict[str, Any] = {
            "resourceType": "Condition",
            "verificationStatus": {
                "coding": [
                    {
                        "system": _VERIFICATION,
                        "code": "entered-in-error"
                        if withdrawn
                        else "confirmed"
                        if dg1(6).upper() == "F"
                        else "provisional",
                    }
                ]
            },
            "category": [{"coding": [{"system": _CATEGORY, "code": "encounter-diagnosis"}]}],
            "code": {"coding": [coding]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "encounter": {"reference": f"Encounter/{encounter['id']}"},
        }
        recorded = t.moment(dg1, 5)
        if recorded:
            condition["recordedDate"] = recorded.fhir
        t.fhir.write("Condition", condition_id, condition)
        if withdrawn:
            continue
        entry: dict[str, Any] = {"condition": {"reference": reference}}
        role = _ROLES.get(dg1(6).upper())
        if role:
            entry["use"] = {"coding": [{"system": _ROLE, "code": role}]}
        if dg1(15).isdigit() and int(dg1(15)) > 0:
            entry["rank"] = int(dg1(15))
        diagnoses.append(entry)
    if diagnoses:
        encounter["diagnosis"] = diagnoses
    else:
        encounter.pop("diagnosis", None)


def _condition_id(encounter_id: str, code: str) -> str:
    return f"{encounter_id}-{re.sub(r'[^A-Za-z0-9.]', '-', code)}"[:64]
