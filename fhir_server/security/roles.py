"""What each role may do, as data: permissions (SMART's c, r, u, d, s) per resource type, the
operations it may invoke, and whether its access to patient data follows its relation to the
patient. A request needs both: the token's scopes and the role's permissions.

Types fall in four groups:
- patient data: the types of R4's Patient compartment (compartmentdefinition-patient), Patient
  included, AuditEvent excepted;
- the directory (who and where: Practitioner, Organization, Location...) and definitions
  (PlanDefinition, Measure, ValueSet...): not about a patient, open to every professional;
- the audit trail: AuditEvent, for auditors only, and never written through the API;
- the rest (Binary, Bundle, Subscription...): the administrator's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from fhir_server.model.registry import resource_types
from fhir_server.search.compartment import compartment_params
from fhir_server.security.principal import (
    ADMIN,
    AUDITOR,
    COORDINATOR,
    GP,
    HOSPITAL,
    IDEL,
    PHARMACIST,
)
from fhir_server.storage.schema import AUDIT_TRAIL

AUDIT = frozenset({AUDIT_TRAIL})
DIRECTORY = frozenset(
    {
        "Device",
        "DeviceDefinition",
        "Endpoint",
        "HealthcareService",
        "Location",
        "Medication",
        "MedicationKnowledge",
        "Organization",
        "OrganizationAffiliation",
        "Practitioner",
        "PractitionerRole",
        "Substance",
    }
)
DEFINITIONS = frozenset(
    {
        "ActivityDefinition",
        "CapabilityStatement",
        "CodeSystem",
        "CompartmentDefinition",
        "ConceptMap",
        "EventDefinition",
        "GraphDefinition",
        "ImplementationGuide",
        "Library",
        "Measure",
        "MessageDefinition",
        "NamingSystem",
        "ObservationDefinition",
        "OperationDefinition",
        "PlanDefinition",
        "Questionnaire",
        "SearchParameter",
        "SpecimenDefinition",
        "StructureDefinition",
        "StructureMap",
        "TerminologyCapabilities",
        "ValueSet",
    }
)
# Types readable by every professional whatever their patients: nothing in them is a patient's.
OPEN = DIRECTORY | DEFINITIONS


@cache
def patient_data() -> frozenset[str]:
    return (
        frozenset(t for t in resource_types() if compartment_params("Patient", t) is not None)
        - AUDIT
    )


@dataclass(frozen=True)
class Role:
    """`permissions`: type (or group name) → letters of `cruds`; `relation`: patient data only
    of the patients the caller is related to (docs/security.md)."""

    name: str
    permissions: dict[str, str]
    operations: frozenset[str] = frozenset()
    relation: bool = False
    _cache: dict[str, frozenset[str]] = field(default_factory=dict, compare=False, repr=False)

    def allows(self, type_: str, permission: str) -> bool:
        granted = self._cache.get(type_)
        if granted is None:
            granted = self._cache[type_] = frozenset(self._letters(type_))
        return permission in granted

    def _letters(self, type_: str) -> str:
        if type_ in self.permissions:  # a type named explicitly overrides its group
            return self.permissions[type_]
        for group, members in (
            ("patient-data", patient_data()),
            ("directory", DIRECTORY),
            ("definitions", DEFINITIONS),
            ("audit", AUDIT),
        ):
            if type_ in members:
                return self.permissions.get(group, "")
        return self.permissions.get("other", "")


_PROFESSIONAL = {"patient-data": "rs", "directory": "rs", "definitions": "rs"}
_WRITES = "crus"

ROLE_TABLE: dict[str, Role] = {
    role.name: role
    for role in (
        # The hospital's integration engine (ADT, discharge letters): a system that feeds the
        # server, unbounded by care teams, which never deletes (R4 voids with entered-in-error).
        Role(
            HOSPITAL,
            {"patient-data": "crus", "directory": "crus", "definitions": "rs"},
            frozenset({"validate"}),
        ),
        Role(
            GP,
            {
                **_PROFESSIONAL,
                **dict.fromkeys(
                    (
                        "Patient",
                        "Observation",
                        "Condition",
                        "AllergyIntolerance",
                        "Procedure",
                        "Immunization",
                        "ServiceRequest",
                        "MedicationRequest",
                        "MedicationStatement",
                        "Communication",
                        "CommunicationRequest",
                        "DocumentReference",
                        "QuestionnaireResponse",
                        "Consent",
                        "Task",
                    ),
                    _WRITES,
                ),
            },
            frozenset({"validate"}),
            relation=True,
        ),
        Role(
            PHARMACIST,
            {
                **_PROFESSIONAL,
                **dict.fromkeys(
                    (
                        "MedicationRequest",
                        "MedicationDispense",
                        "MedicationStatement",
                        "Observation",
                        "Communication",
                    ),
                    _WRITES,
                ),
                "Task": "rus",
            },
            frozenset({"validate"}),
            relation=True,
        ),
        Role(
            IDEL,
            {
                **_PROFESSIONAL,
                **dict.fromkeys(("Observation", "Communication", "QuestionnaireResponse"), _WRITES),
                "Task": "rus",
            },
            frozenset({"validate"}),
            relation=True,
        ),
        # The CPTS's coordinator: enrols patients (Patient, CareTeam, Consent), runs their
        # pathways and keeps the CPTS's directory.
        Role(
            COORDINATOR,
            {
                **_PROFESSIONAL,
                "directory": "crus",
                **dict.fromkeys(
                    (
                        "Patient",
                        "CareTeam",
                        "CarePlan",
                        "Task",
                        "Communication",
                        "Flag",
                        "Consent",
                        "ServiceRequest",
                        "Appointment",
                    ),
                    _WRITES,
                ),
            },
            frozenset({"apply", "evaluate-measure", "validate"}),
            relation=True,
        ),
        Role(AUDITOR, {"audit": "rs", "directory": "rs"}),
        # Runs the server: directory, definitions and the rest, never patient data nor the
        # audit trail.
        Role(
            ADMIN,
            {"directory": "cruds", "definitions": "cruds", "other": "cruds"},
            frozenset({"validate", "meta"}),
        ),
    )
}
