"""A realistic CPTS, generated: professionals with RPPS, organisations with FINESS, patients
with INS, care teams, hospital stays, pathways (CarePlans) with Tasks in every status and with
deadlines, observations and documents. Deterministic for a seed, streamed in batches so that a
million resources never sit in memory at once.

A patient comes with 20 resources: a care team, two hospital stays, one pathway (CarePlan) with
five tasks, ten observations and one document. A million resources are about 47,500 patients,
2,000 professionals (a large CPTS) and 200 organisations.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

INS = "urn:oid:1.2.250.1.213.1.4.8"
RPPS = "https://rpps.esante.gouv.fr"
FINESS = "https://finess.esante.gouv.fr"
PATHWAY_SYSTEM = "https://cpts-fhir.org/fhir/CodeSystem/pathway"
PATHWAY_EXTENSION = "https://cpts-fhir.org/fhir/StructureDefinition/pathway"
PATHWAYS = ["hospital-discharge", "heart-failure", "osteoporosis", "neurodevelopment"]
TASK_STATUSES = (
    ["requested"] * 3
    + ["accepted"] * 2
    + ["in-progress"] * 2
    + ["completed"] * 8
    + ["cancelled", "on-hold", "failed", "rejected", "received", "draft"]
)
ROLES = ["gp"] * 5 + ["idel"] * 8 + ["pharmacist"] * 3 + ["cardiologist", "coordinator"]
FAMILIES = [
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Mercier",
]
GIVEN = {
    "female": ["Hélène", "Marie", "Anaïs", "Chloé", "Inès", "Léa", "Zoé", "Céline"],
    "male": ["Jean", "Lucas", "Hugo", "Théo", "Noé", "Jérôme", "Loïc", "François"],
}
LOINC = [
    ("29463-7", "Poids", "kg", 50, 110),
    ("8867-4", "Fréquence cardiaque", "/min", 50, 110),
    ("8480-6", "Pression artérielle systolique", "mm[Hg]", 95, 180),
]
EPOCH = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Scale:
    """How many of each kind, for a total of about `resources`."""

    resources: int

    @property
    def practitioners(self) -> int:
        return max(self.resources // 500, 18)

    @property
    def organizations(self) -> int:
        return max(self.resources // 5000, 2)

    @property
    def patients(self) -> int:
        return max((self.resources - self.practitioners - self.organizations) // 21, 5)


def parse_scale(text: str) -> Scale:
    units = {"k": 1_000, "m": 1_000_000}
    text = text.lower().strip()
    return Scale(int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text))


def practitioner_id(n: int) -> str:
    return f"pr-{n:06d}"


def patient_id(n: int) -> str:
    return f"pat-{n:07d}"


def rpps(n: int) -> str:
    return f"1{n:010d}"


def ins(n: int) -> str:
    return f"{1 + n % 2}{48 + n % 50:02d}{1 + n % 12:02d}{69:02d}{n:08d}"[:15]


def role_of(n: int) -> str:
    return ROLES[n % len(ROLES)]


def _instant(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


class Generator:
    def __init__(self, scale: Scale, seed: int = 42) -> None:
        self.scale = scale
        self.random = random.Random(seed)
        roles: dict[str, list[int]] = {}
        for n in range(scale.practitioners):
            roles.setdefault(role_of(n), []).append(n)
        self.by_role = roles

    def resources(self) -> Iterator[dict[str, Any]]:
        """Every resource, referenced ones before those that reference them."""
        yield from (self.organization(n) for n in range(self.scale.organizations))
        yield from (self.practitioner(n) for n in range(self.scale.practitioners))
        for n in range(self.scale.patients):
            yield from self.patient_record(n)

    def organization(self, n: int) -> dict[str, Any]:
        kind = "CPTS" if n % 10 == 0 else ("Centre hospitalier" if n % 3 == 0 else "Pharmacie")
        return {
            "resourceType": "Organization",
            "id": f"org-{n:05d}",
            "identifier": [{"system": FINESS, "value": f"69{n:07d}"}],
            "name": f"{kind} {FAMILIES[n % len(FAMILIES)]} {n}",
            "type": [{"text": kind}],
        }

    def practitioner(self, n: int) -> dict[str, Any]:
        gender = "female" if n % 2 else "male"
        return {
            "resourceType": "Practitioner",
            "id": practitioner_id(n),
            "identifier": [
                {"system": RPPS, "value": rpps(n)},
                {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "8" + rpps(n)},
            ],
            "name": [{"family": FAMILIES[n % len(FAMILIES)], "given": [GIVEN[gender][n % 8]]}],
            "telecom": [{"system": "email", "value": f"{practitioner_id(n)}@cpts.mssante.fr"}],
            "qualification": [{"code": {"text": role_of(n)}}],
        }

    def _member(self, role: str) -> str:
        return practitioner_id(self.random.choice(self.by_role[role]))

    def patient_record(self, n: int) -> Iterator[dict[str, Any]]:
        r = self.random
        pid = patient_id(n)
        subject = {"reference": f"Patient/{pid}"}
        gender = "female" if r.random() < 0.55 else "male"
        gp = self._member("gp")
        yield {
            "resourceType": "Patient",
            "id": pid,
            "extension": [
                {
                    "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/"
                    "fr-core-identity-reliability",
                    "extension": [
                        {
                            "url": "identityReliability",
                            "valueCoding": {
                                "system": "https://hl7.fr/ig/fhir/core/CodeSystem/"
                                "fr-core-cs-v2-0445",
                                "code": "VALI",
                            },
                        }
                    ],
                }
            ],
            "identifier": [
                {"system": INS, "value": ins(n)},
                {"system": "urn:oid:1.2.250.1.999.1", "value": f"IPP{n:08d}"},
            ],
            "name": [
                {
                    "use": "official",
                    "family": r.choice(FAMILIES),
                    "given": [r.choice(GIVEN[gender])],
                }
            ],
            "gender": gender,
            "birthDate": f"{r.randint(1930, 2020)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
            "address": [
                {
                    "city": r.choice(["Lyon", "Villeurbanne", "Vénissieux", "Bron"]),
                    "postalCode": "69100",
                    "country": "FR",
                }
            ],
            "generalPractitioner": [{"reference": f"Practitioner/{gp}"}],
        }
        team = {"idel": self._member("idel"), "pharmacist": self._member("pharmacist"), "gp": gp}
        yield {
            "resourceType": "CareTeam",
            "id": f"team-{n:07d}",
            "status": "active",
            "subject": subject,
            "participant": [
                {"role": [{"text": role}], "member": {"reference": f"Practitioner/{member}"}}
                for role, member in team.items()
            ],
        }
        stays = []
        for k in range(2):
            start = EPOCH - timedelta(days=r.randint(1, 700), hours=r.randint(0, 23))
            end = start + timedelta(days=r.randint(1, 15))
            finished = end < EPOCH
            stay = {
                "resourceType": "Encounter",
                "id": f"enc-{n:07d}-{k}",
                "status": "finished" if finished else "in-progress",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "IMP",
                },
                "subject": subject,
                "period": {
                    "start": _instant(start),
                    **({"end": _instant(end)} if finished else {}),
                },
            }
            stays.append(stay)
            yield stay
        pathway = PATHWAYS[n % len(PATHWAYS)]
        trigger = EPOCH - timedelta(days=r.randint(0, 120))
        plan_id = f"plan-{n:07d}"
        pathway_coding = {"system": PATHWAY_SYSTEM, "code": pathway}
        yield {
            "resourceType": "CarePlan",
            "id": plan_id,
            "status": "active",
            "intent": "plan",
            "category": [{"coding": [pathway_coding]}],
            "instantiatesCanonical": [f"https://cpts-fhir.org/fhir/PlanDefinition/{pathway}"],
            "subject": subject,
            "period": {"start": _instant(trigger)},
            "careTeam": [{"reference": f"CareTeam/team-{n:07d}"}],
        }
        for k in range(5):
            role = ["idel", "gp", "pharmacist", "idel", "cardiologist"][k]
            owner = team.get(role) or self._member(role)
            due = trigger + timedelta(days=[2, 7, 2, 14, 60][k], hours=r.randint(0, 8))
            yield {
                "resourceType": "Task",
                "id": f"task-{n:07d}-{k}",
                "extension": [{"url": PATHWAY_EXTENSION, "valueCoding": pathway_coding}],
                "status": r.choice(TASK_STATUSES),
                "intent": "order",
                "priority": "urgent" if k == 2 else "routine",
                "code": {"text": f"Étape {k + 1} du parcours {pathway}"},
                "basedOn": [{"reference": f"CarePlan/{plan_id}"}],
                "for": subject,
                "encounter": {"reference": f"Encounter/{stays[-1]['id']}"},
                "owner": {"reference": f"Practitioner/{owner}"},
                "authoredOn": _instant(trigger),
                "restriction": {"period": {"end": _instant(due)}},
            }
        for k in range(10):
            code, text, unit, low, high = LOINC[k % len(LOINC)]
            yield {
                "resourceType": "Observation",
                "id": f"obs-{n:07d}-{k}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": text},
                "subject": subject,
                "effectiveDateTime": _instant(trigger + timedelta(days=k * 3)),
                "valueQuantity": {
                    "value": r.randint(low, high),
                    "unit": unit,
                    "system": "http://unitsofmeasure.org",
                    "code": unit,
                },
            }
        yield {
            "resourceType": "DocumentReference",
            "id": f"doc-{n:07d}",
            "status": "current",
            "type": {
                "coding": [
                    {
                        "system": "http://loinc.org",
                        "code": "11490-0",
                        "display": "Lettre de liaison",
                    }
                ]
            },
            "subject": subject,
            "date": _instant(trigger),
            "content": [
                {"attachment": {"contentType": "application/pdf", "url": f"Binary/letter-{n:07d}"}}
            ],
            "context": {"encounter": [{"reference": f"Encounter/{stays[-1]['id']}"}]},
        }
