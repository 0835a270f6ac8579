"""One valid and several invalid examples of each shipped profile (tests/fixtures/profiles/<id>/),
with the problems each invalid one must raise, written by hand: (severity, code, location, and a
piece of the text naming the rule). Every example first passes the structure check, as a write
would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_server.model.structure import check_resource
from fhir_server.validation import Validator

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "profiles"

EXPECTED: dict[str, list[tuple[str, str, str, str]]] = {
    # FR Core Patient: the INS only with a validated identity, reference targets, the extension
    "fr-core-patient/valid": [],
    "fr-core-patient/invalid-ins-not-validated": [
        ("error", "invariant", "Patient", "cpts-patient-1"),
    ],
    "fr-core-patient/invalid-ins-unqualified-and-malformed": [
        ("error", "invariant", "Patient", "cpts-patient-1"),
        ("error", "invariant", "Patient", "cpts-patient-2"),
    ],
    "fr-core-patient/invalid-reference-targets": [
        ("error", "structure", "Patient.generalPractitioner[1]", "a reference to Patient"),
        ("error", "structure", "Patient.managingOrganization", "a reference to Practitioner"),
    ],
    "fr-core-patient/invalid-reliability-extension": [
        ("error", "code-invalid", "Patient.extension[0].extension[0].valueCoding", "QUAL"),
        ("error", "structure", "Patient.extension[0].extension[1].valueString", "not allowed"),
        ("error", "required", "Patient.extension[0].extension[1].value", "validationMode"),
    ],
    # FR Core Patient INS: reliability, INS slices, identity traits, fr-core-1 and fr-core-2
    "fr-core-patient-ins/valid": [],
    "fr-core-patient-ins/valid-ins-nia": [],
    "fr-core-patient-ins/invalid-vali-without-ins": [
        ("error", "invariant", "Patient", "fr-core-1"),
        ("error", "invariant", "Patient", "fr-core-2"),
    ],
    "fr-core-patient-ins/invalid-ins-slice-fields": [
        ("error", "invariant", "Patient", "cpts-patient-2"),
        ("error", "invariant", "Patient", "fr-core-1"),
        ("error", "invariant", "Patient", "fr-core-2"),
        ("error", "value", "Patient.identifier[0].use", 'must be "official"'),
        ("error", "value", "Patient.identifier[0].type", "INS-NIR"),
        ("error", "required", "Patient.identifier[0].value", "INS-NIR.value: minimum 1"),
    ],
    "fr-core-patient-ins/invalid-two-test-ins": [
        ("error", "invariant", "Patient", "fr-core-2"),
        ("error", "structure", "Patient.identifier", "INS-NIR-TEST: maximum 1, found 2"),
    ],
    "fr-core-patient-ins/invalid-missing-traits": [
        ("error", "invariant", "Patient", "cpts-patient-1"),
        ("error", "required", "Patient.extension", "identityReliability: minimum 1, found 0"),
        ("error", "required", "Patient.name", "officialName: minimum 1, found 0"),
        ("error", "required", "Patient.gender", "minimum 1"),
        ("error", "required", "Patient.birthDate", "minimum 1"),
    ],
    "fr-core-patient-ins/invalid-gender": [
        ("error", "code-invalid", "Patient.gender", "fr-core-vs-patient-gender-INS"),
    ],
    # FR Core Practitioner: RPPS and IDNPS slices
    "fr-core-practitioner/valid": [],
    "fr-core-practitioner/invalid-idnps-not-rpps": [
        ("error", "invariant", "Practitioner", "cpts-practitioner-1"),
    ],
    "fr-core-practitioner/invalid-rpps": [
        ("error", "structure", "Practitioner.identifier", "rpps: maximum 1, found 2"),
        ("error", "invariant", "Practitioner.identifier[0]", "cpts-rpps-1"),
        ("error", "value", "Practitioner.identifier[0].type", "RPPS"),
    ],
    # FR Core Organization: FINESS slice by pattern, every identifier has a system
    "fr-core-organization/valid": [],
    "fr-core-organization/valid-corsica": [],
    "fr-core-organization/invalid": [
        ("error", "required", "Organization.identifier[1].system", "minimum 1"),
        ("error", "invariant", "Organization.identifier[0]", "cpts-finess-1"),
        ("error", "structure", "Organization.partOf", "a reference to Patient"),
    ],
    # Pathway CarePlan
    "pathway-careplan/valid": [],
    "pathway-careplan/invalid-not-a-pathway": [
        ("error", "invariant", "CarePlan", "cpts-careplan-2"),
        ("error", "required", "CarePlan.extension", "pathway: minimum 1, found 0"),
        ("error", "required", "CarePlan.instantiatesCanonical", "minimum 1"),
        ("error", "value", "CarePlan.intent", 'must be "plan"'),
        ("error", "structure", "CarePlan.subject", "a reference to Group"),
        ("error", "required", "CarePlan.period", "minimum 1"),
    ],
    "pathway-careplan/invalid-pathway-codes": [
        ("error", "invariant", "CarePlan", "cpts-careplan-1"),
        ("error", "invariant", "CarePlan", "cpts-careplan-2"),
        ("error", "code-invalid", "CarePlan.extension[0].valueCoding", "diabetes"),
    ],
    # Pathway Task
    "pathway-task/valid": [],
    "pathway-task/valid-completed": [],
    "pathway-task/warning-completed-undated": [
        ("warning", "invariant", "Task", "cpts-task-1"),
    ],
    "pathway-task/invalid-not-a-pathway-step": [
        ("error", "required", "Task.extension", "pathway: minimum 1, found 0"),
        ("error", "required", "Task.instantiatesCanonical", "minimum 1"),
        ("error", "structure", "Task.basedOn[0]", "a reference to ServiceRequest"),
        ("error", "code-invalid", "Task.status", "pathway-task-status"),
        ("error", "value", "Task.intent", 'must be "order"'),
        ("error", "structure", "Task.owner", "a reference to Device"),
        ("error", "required", "Task.restriction", "minimum 1"),
    ],
    "pathway-task/invalid-pathway-and-deadline": [
        ("error", "structure", "Task.extension[0].valueString", "not allowed"),
        ("error", "required", "Task.extension[0].value", "minimum 1"),
        ("error", "required", "Task.restriction.period.end", "minimum 1"),
    ],
    # Renewal MedicationRequest
    "renewal-medicationrequest/valid": [],
    "renewal-medicationrequest/invalid": [
        ("error", "invariant", "MedicationRequest", "cpts-renewal-1"),
        ("error", "value", "MedicationRequest.courseOfTherapyType", "continuous"),
        ("error", "structure", "MedicationRequest.requester", "a reference to Organization"),
        ("error", "required", "MedicationRequest.priorPrescription", "minimum 1"),
    ],
    # Discharge DocumentReference
    "discharge-documentreference/valid": [],
    "discharge-documentreference/invalid-incomplete": [
        ("error", "invariant", "DocumentReference", "cpts-discharge-1"),
        ("error", "required", "DocumentReference.author", "minimum 1"),
        ("error", "required", "DocumentReference.context.encounter", "minimum 1"),
        ("error", "required", "DocumentReference.content[0].attachment.contentType", "minimum 1"),
    ],
    "discharge-documentreference/invalid-not-a-discharge-letter": [
        ("error", "value", "DocumentReference.type", "11490-0"),
    ],
    "discharge-documentreference/invalid-unknown-type": [
        ("error", "value", "DocumentReference.type", "11490-0"),
        ("error", "code-invalid", "DocumentReference.type", "none of the codings"),
    ],
}


def test_every_example_has_expectations_and_every_profile_examples() -> None:
    shipped = {f"{p.parent.name}/{p.stem}" for p in EXAMPLES.glob("*/*.json")}
    assert shipped == set(EXPECTED)
    for profile in {name.split("/")[0] for name in shipped}:
        assert f"{profile}/valid" in shipped
        assert any(n.startswith(f"{profile}/invalid") for n in shipped)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example(validator: Validator, name: str) -> None:
    resource = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    check_resource(resource)
    profiles = resource["meta"]["profile"]
    assert profiles[0].rsplit("/", 1)[1] == name.split("/")[0]
    issues = validator.validate(resource, profiles)
    found = [(i.severity, i.code, i.expression) for i in issues]
    assert found == [e[:3] for e in EXPECTED[name]], [i.diagnostics for i in issues]
    for issue, expected in zip(issues, EXPECTED[name], strict=True):
        assert expected[3] in issue.diagnostics
