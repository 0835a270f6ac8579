"""One small CPTS, as the security tests seed it: who works there, four patients in four
different relations to them, and a little data about each.

- Patient A: care team (CareTeam `ct-A`, active) of the GP `gp-1` and the nurse `idel-1`;
- Patient B: nobody's care team, but a Task owned by the pharmacist `pharm-1`;
- Patient C: related to nobody;
- Patient D: a CarePlan authored by the CPTS (`Organization/cpts`), in which the coordinator
  `coord-1` holds an active PractitionerRole; no care team.

`idel-2` is a nurse outside every care team; `auditor-1` and `admin-1` run the audit and the
server. Every patient has an Observation, a Condition, an Encounter, a DocumentReference and a
Task; the Observations carry a note (`NOTE_MARK`) that must never leave through a door the
caller may not see through, nor land in an AuditEvent.
"""

from __future__ import annotations

import json
from typing import Any

from pathways.catalogue import DEFINITIONS_DIR

PATIENTS = ("A", "B", "C", "D")
FAMILY = {"A": "Arnaud", "B": "Bernard", "C": "Carpentier", "D": "Durand"}
IPP_SYSTEM = "urn:oid:1.2.250.1.999.1.1"
OBSERVATION_SYSTEM = "urn:oid:1.2.250.1.999.1.2"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PATHWAY_SYSTEM = "https://cpts-fhir.org/fhir/CodeSystem/pathway"
CPTS = "Organization/cpts"
# A shipped indicator: the patients included in the heart-failure pathway by the CPTS.
INCLUSIONS = "heart-failure-inclusions"

# The Practitioner each role's user is, in the seeded CPTS.
PRACTITIONER = {
    "gp": "Practitioner/gp-1",
    "idel": "Practitioner/idel-1",
    "pharmacist": "Practitioner/pharm-1",
    "coordinator": "Practitioner/coord-1",
    "auditor": "Practitioner/auditor-1",
    "admin": "Practitioner/admin-1",
}
OUTSIDER = "Practitioner/idel-2"
HOSPITAL_CLIENT = "chu-integration"  # the client id of the hospital's integration engine
# The patient each professional is related to (the hospital is related to none: it sees all).
MY_PATIENT = {"hospital": "A", "gp": "A", "idel": "A", "pharmacist": "B", "coordinator": "D"}


def note_mark(patient: str) -> str:
    """A string found only in the Observation of `patient`."""
    return f"NOTE-{patient}-QX7"


def ref(reference: str) -> dict[str, str]:
    return {"reference": reference}


def practitioner(id_: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": id_, "name": [{"family": family}]}


def patient(id_: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": id_,
        "identifier": [{"system": IPP_SYSTEM, "value": f"IPP-{id_}"}],
        "name": [{"family": FAMILY[id_], "given": ["Jeanne"]}],
        "gender": "female",
        "birthDate": "1948-03-12",
    }


def observation(
    id_: str, patient_id: str, performer: str | None = None, **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id_,
        "identifier": [{"system": OBSERVATION_SYSTEM, "value": id_}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": ref(f"Patient/{patient_id}"),
        "valueQuantity": {
            "value": 72,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
        "note": [{"text": note_mark(patient_id)}],
    }
    if performer:
        resource["performer"] = [ref(performer)]
    resource.update(extra)
    return resource


def condition(id_: str, patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": id_,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "84114007"}]},
        "subject": ref(f"Patient/{patient_id}"),
    }


def encounter(id_: str, patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": id_,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": ref(f"Patient/{patient_id}"),
    }


def document(id_: str, patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": id_,
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11490-0"}]},
        "subject": ref(f"Patient/{patient_id}"),
        "content": [{"attachment": {"contentType": "text/plain", "data": "TGV0dHJl"}}],
    }


def task(
    id_: str,
    patient_id: str | None,
    owner: str | None = None,
    requester: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": id_,
        "status": "requested",
        "intent": "order",
    }
    if patient_id:
        resource["for"] = ref(f"Patient/{patient_id}")
    if owner:
        resource["owner"] = ref(owner)
    if requester:
        resource["requester"] = ref(requester)
    resource.update(extra)
    return resource


def care_team(id_: str, patient_id: str, members: list[str], status: str = "active") -> dict:
    return {
        "resourceType": "CareTeam",
        "id": id_,
        "status": status,
        "subject": ref(f"Patient/{patient_id}"),
        "participant": [{"member": ref(m)} for m in members],
    }


def care_plan(id_: str, patient_id: str, author: str = CPTS) -> dict[str, Any]:
    """The CarePlan of a heart-failure pathway started in March 2025."""
    return {
        "resourceType": "CarePlan",
        "id": id_,
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [{"system": PATHWAY_SYSTEM, "code": "heart-failure"}]}],
        "subject": ref(f"Patient/{patient_id}"),
        "period": {"start": "2025-03-01"},
        "author": ref(author),
    }


def practitioner_role(id_: str, who: str, organization: str = CPTS, active: bool = True) -> dict:
    return {
        "resourceType": "PractitionerRole",
        "id": id_,
        "active": active,
        "practitioner": ref(who),
        "organization": ref(organization),
    }


def consent(
    id_: str,
    patient_id: str,
    category: str,
    provision_type: str,
    actors: tuple[str, ...] = (),
    period: dict[str, str] | None = None,
    status: str = "active",
) -> dict[str, Any]:
    """A Consent of the kind docs/security.md reads: opposition (IDSCL, deny) or sharing
    (INFA, permit)."""
    provision: dict[str, Any] = {"type": provision_type}
    if actors:
        provision["actor"] = [
            {
                "role": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                            "code": "PROV",
                        }
                    ]
                },
                "reference": ref(actor),
            }
            for actor in actors
        ]
    if period:
        provision["period"] = period
    return {
        "resourceType": "Consent",
        "id": id_,
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": ACT_CODE, "code": category}]}],
        "patient": ref(f"Patient/{patient_id}"),
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}
            ]
        },
        "provision": provision,
    }


def directory() -> list[dict[str, Any]]:
    """The CPTS, its people and the coordinator's role in it."""
    people = [
        practitioner("gp-1", "Gauthier"),
        practitioner("idel-1", "Isnard"),
        practitioner("pharm-1", "Pasquier"),
        practitioner("coord-1", "Collin"),
        practitioner("idel-2", "Ibanez"),
        practitioner("auditor-1", "Aubert"),
        practitioner("admin-1", "Adam"),
    ]
    cpts = {"resourceType": "Organization", "id": "cpts", "name": "CPTS du Val"}
    return [cpts, *people, practitioner_role("coord-1-cpts", PRACTITIONER["coordinator"])]


def patient_data() -> list[dict[str, Any]]:
    """The four patients, their data and the resources that relate professionals to them."""
    performers = {"A": PRACTITIONER["idel"], "C": OUTSIDER}
    tasks = {
        "A": task("task-A", "A", requester=PRACTITIONER["gp"]),  # unassigned: to be claimed
        "B": task("task-B", "B", owner=PRACTITIONER["pharmacist"]),
        "C": task("task-C", "C"),
        "D": task("task-D", "D", basedOn=[ref("CarePlan/cp-D")]),
    }
    resources: list[dict[str, Any]] = []
    for p in PATIENTS:
        resources += [
            patient(p),
            observation(f"obs-{p}", p, performers.get(p)),
            condition(f"cond-{p}", p),
            encounter(f"enc-{p}", p),
            document(f"doc-{p}", p),
            tasks[p],
        ]
    resources += [
        care_team("ct-A", "A", [PRACTITIONER["gp"], PRACTITIONER["idel"]]),
        care_plan("cp-D", "D"),
    ]
    return resources


def definitions() -> list[dict[str, Any]]:
    """What the administrator loads: a PlanDefinition and the shipped inclusions indicator."""
    shipped = json.loads((DEFINITIONS_DIR / "heart-failure-indicators.json").read_text())
    measure = next(e["resource"] for e in shipped["entry"] if e["resource"]["id"] == INCLUSIONS)
    plan = {
        "resourceType": "PlanDefinition",
        "id": "pd-1",
        "url": "https://cpts.example/PlanDefinition/pd-1",
        "status": "active",
    }
    return [plan, measure]
