"""The required bindings of the base R4 specification, checked on every resource whatever its
profiles: codes the fhir.resources models let through."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fhir_server.model.registry import resource_types
from fhir_server.model.structure import check_resource
from fhir_server.validation import Validator
from fhir_server.validation.bindings import RequiredBindings, resolve
from fhir_server.validation.value_sets import ValueSets
from profiles import TABLES_DIR

TABLE = json.loads((TABLES_DIR / "required-bindings.json").read_text())


def issues_of(validator: Validator, resource: dict[str, Any]) -> list[tuple[str, str | None]]:
    check_resource(resource)  # what the models accept ...
    return [(i.code, i.expression) for i in validator.validate(resource)]  # ... and what not


def test_task_status(validator: Validator) -> None:
    task = {"resourceType": "Task", "status": "bogus", "intent": "order", "priority": "asap"}
    assert issues_of(validator, task) == [("code-invalid", "Task.status")]
    task["status"] = "requested"
    assert issues_of(validator, task) == []


def test_patient_gender(validator: Validator) -> None:
    patient = {"resourceType": "Patient", "gender": "F"}
    issues = validator.validate(patient)
    assert [(i.code, i.expression) for i in issues] == [("code-invalid", "Patient.gender")]
    assert "http://hl7.org/fhir/ValueSet/administrative-gender" in issues[0].diagnostics


def test_nested_elements_and_data_types(validator: Validator) -> None:
    patient = {
        "resourceType": "Patient",
        "text": {"status": "made-up", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
        "name": [{"use": "official", "family": "A"}, {"use": "nick", "family": "B"}],
        "telecom": [{"system": "telex", "value": "1"}, {"system": "pager", "value": "2"}],
        "contact": [{"gender": "woman", "address": {"use": "home", "type": "flat"}}],
        "managingOrganization": {"identifier": {"use": "main", "value": "x"}},
        "extension": [
            {"url": "http://example.org/a", "valueContactPoint": {"system": "pigeon", "value": "x"}}
        ],
    }
    assert issues_of(validator, patient) == [  # in the order of the instance
        ("code-invalid", "Patient.text.status"),
        ("code-invalid", "Patient.name[1].use"),
        ("code-invalid", "Patient.telecom[0].system"),
        ("code-invalid", "Patient.contact[0].gender"),
        ("code-invalid", "Patient.contact[0].address.type"),
        ("code-invalid", "Patient.managingOrganization.identifier.use"),
        ("code-invalid", "Patient.extension[0].valueContactPoint.system"),
    ]


def test_codeable_concept(validator: Validator) -> None:
    allergy = {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": "http://example.org", "code": "active"}]},
        "patient": {"reference": "Patient/p"},
    }
    assert issues_of(validator, allergy) == [("code-invalid", "AllergyIntolerance.clinicalStatus")]
    allergy["clinicalStatus"]["coding"].append(
        {
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
            "code": "active",
        }
    )
    assert issues_of(validator, allergy) == []


def test_contained_resources_and_bundle_entries(validator: Validator) -> None:
    task = {
        "resourceType": "Task",
        "contained": [{"resourceType": "Patient", "id": "p", "gender": "X"}],
        "status": "requested",
        "intent": "order",
        "for": {"reference": "#p"},
    }
    assert issues_of(validator, task) == [("code-invalid", "Task.contained[0].gender")]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": task}, {"resource": {"resourceType": "Patient", "gender": "Y"}}],
    }
    assert issues_of(validator, bundle) == [
        ("code-invalid", "Bundle.entry[0].resource.contained[0].gender"),
        ("code-invalid", "Bundle.entry[1].resource.gender"),
    ]


def test_repeating_codes(validator: Validator) -> None:
    plan = {
        "resourceType": "PlanDefinition",
        "status": "draft",
        "action": [{"participant": [{"type": "robot"}], "action": [{"groupingBehavior": "x"}]}],
    }
    assert issues_of(validator, plan) == [
        ("code-invalid", "PlanDefinition.action[0].participant[0].type"),
        ("code-invalid", "PlanDefinition.action[0].action[0].groupingBehavior"),
    ]


def test_value_sets_that_are_not_expanded_are_not_checked(validator: Validator) -> None:
    table = json.loads((TABLES_DIR / "required-bindings.json").read_text())
    assert (
        "Attachment.contentType" in table["notExpanded"]["http://hl7.org/fhir/ValueSet/mimetypes"]
    )
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"contentType": "application/x-made-up"}}],
    }
    assert issues_of(validator, document) == []


@pytest.mark.parametrize("resource_type", ["Patient", "Task", "Observation", "Bundle"])
def test_valid_codes_pass(validator: Validator, resource_type: str) -> None:
    resources = {
        "Patient": {"resourceType": "Patient", "gender": "other", "name": [{"use": "maiden"}]},
        "Task": {"resourceType": "Task", "status": "entered-in-error", "intent": "plan"},
        "Observation": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "weight"},
            "valueQuantity": {"value": 70, "comparator": ">="},
        },
        "Bundle": {"resourceType": "Bundle", "type": "searchset"},
    }
    assert issues_of(validator, resources[resource_type]) == []


@pytest.mark.parametrize("reverse", [False, True])
def test_every_served_type_can_be_planned_in_any_order(reverse: bool) -> None:
    """Types are planned on first use; whatever the order, no binding is planned away."""
    bindings = RequiredBindings(
        TABLE["bindings"], ValueSets([], [], TABLE["valueSets"]), resource_types()
    )
    for resource_type in sorted(resource_types(), reverse=reverse):
        assert bindings.check({"resourceType": resource_type}) == []


def test_every_bound_path_resolves_to_a_code_or_codeable_concept() -> None:
    kinds = {resolve(path)[1].primitive or "CodeableConcept" for path in TABLE["bindings"]}
    assert kinds == {"code", "CodeableConcept"}
