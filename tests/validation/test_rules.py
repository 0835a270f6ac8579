"""Each kind of profile rule, on the shipped profiles where they use it and on small profiles
written here where they do not (closed slicing, refusals at load time)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fhir_server.validation import Validator
from profiles import PROFILES_DIR

FR = "https://hl7.fr/ig/fhir/core/StructureDefinition/"
CPTS = "https://cpts-fhir.org/fhir/StructureDefinition/"
EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "profiles"


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def found(issues: list) -> list[tuple[str, str | None]]:
    return [(i.code, i.expression) for i in issues]


def errors(issues: list) -> list[tuple[str, str | None]]:
    return [(i.code, i.expression) for i in issues if i.severity == "error"]


# ------------------------------------------------------------------------------ cardinality


def test_minimum_cardinality(validator: Validator) -> None:
    task = example("pathway-task/valid")
    del task["for"], task["restriction"]["period"]["end"]
    issues = validator.validate(task, [CPTS + "pathway-task"])
    assert found(issues) == [("required", "Task.for"), ("required", "Task.restriction.period.end")]


def test_minimum_counts_a_primitive_given_by_its_extensions_only(validator: Validator) -> None:
    patient = example("fr-core-patient-ins/valid")
    del patient["birthDate"]
    absent = {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason"}
    patient["_birthDate"] = {"extension": [{**absent, "valueCode": "unknown"}]}
    assert validator.validate(patient, [FR + "fr-core-patient-ins"]) == []


def test_maximum_cardinality(validator: Validator) -> None:
    letter = example("discharge-documentreference/valid")
    letter["context"]["encounter"].append({"reference": "Encounter/stay-2"})
    issues = validator.validate(letter, [CPTS + "discharge-documentreference"])
    assert found(issues) == [("structure", "DocumentReference.context.encounter")]


def test_maximum_zero_in_an_extension(validator: Validator) -> None:
    task = example("pathway-task/valid")
    task["extension"][0]["extension"] = [{"url": "step", "valueString": "1"}]
    issues = validator.validate(task, [CPTS + "pathway-task"])
    assert found(issues) == [("structure", "Task.extension[0].extension")]


# ------------------------------------------------------------------------ fixed and pattern


def test_fixed_value(validator: Validator) -> None:
    plan = example("pathway-careplan/valid")
    plan["intent"] = "proposal"
    issues = validator.validate(plan, [CPTS + "pathway-careplan"])
    assert found(issues) == [("value", "CarePlan.intent")]
    assert 'must be "plan", found "proposal"' in issues[0].diagnostics


def test_pattern_is_matched_by_containment(validator: Validator) -> None:
    renewal = example("renewal-medicationrequest/valid")
    therapy = renewal["courseOfTherapyType"]
    therapy["coding"].insert(0, {"system": "http://example.org/local", "code": "LT"})
    therapy["coding"][1]["display"] = "Continuous long term therapy"
    therapy["text"] = "Traitement chronique"
    assert validator.validate(renewal, [CPTS + "renewal-medicationrequest"]) == []
    therapy["coding"][1]["code"] = "acute"
    issues = validator.validate(renewal, [CPTS + "renewal-medicationrequest"])
    assert found(issues) == [("value", "MedicationRequest.courseOfTherapyType")]


# ---------------------------------------------------------------------------------- slicing


def test_slices_by_identifier_system(validator: Validator) -> None:
    patient = example("fr-core-patient-ins/valid")
    patient["identifier"][0]["system"] = "urn:oid:1.2.250.1.213.1.4.11"  # now the DEMO slice
    issues = validator.validate(patient, [FR + "fr-core-patient-ins"])
    assert found(issues) == [("value", "Patient.identifier[0].type")]
    assert "INS-NIR-DEMO" in issues[0].diagnostics


def test_items_of_no_slice_are_allowed_by_open_slicing(validator: Validator) -> None:
    patient = example("fr-core-patient-ins/valid")
    patient["identifier"].append({"system": "urn:oid:1.2.250.1.999.2", "value": "X1"})
    assert validator.validate(patient, [FR + "fr-core-patient-ins"]) == []


def test_slice_minimum_and_maximum(validator: Validator) -> None:
    patient = example("fr-core-patient-ins/valid")
    patient["name"].append(copy.deepcopy(patient["name"][0]))
    patient["extension"] = [{"url": "http://example.org/other", "valueString": "x"}]
    patient["identifier"] = patient["identifier"][1:]  # no INS: no reliability needed for it
    issues = validator.validate(patient, [FR + "fr-core-patient-ins"])
    assert found(issues) == [("required", "Patient.extension"), ("structure", "Patient.name")]
    assert "identityReliability: minimum 1, found 0" in issues[0].diagnostics
    assert "officialName: maximum 1, found 2" in issues[1].diagnostics


def test_slices_by_pattern(validator: Validator) -> None:
    plan = example("pathway-careplan/valid")
    plan["category"][0]["coding"][0]["code"] = "diabetes"
    plan["category"].append({"coding": [{"system": "http://example.org/other", "code": "x"}]})
    issues = validator.validate(plan, [CPTS + "pathway-careplan"])
    assert found(issues) == [
        ("invariant", "CarePlan"),  # cpts-careplan-2: the category names another pathway
        ("code-invalid", "CarePlan.category[0]"),  # only the pathway slice is bound
    ]


def test_slice_rules_apply_to_their_items_only(validator: Validator) -> None:
    organization = example("fr-core-organization/valid")
    organization["identifier"].append({"system": "https://sirene.fr", "value": "12345"})
    assert validator.validate(organization, [FR + "fr-core-organization"]) == []


def test_closed_slicing(tmp_path: Path) -> None:
    profile = _profile(
        "closed-identifiers",
        "Patient",
        [
            {
                "id": "Patient.identifier",
                "path": "Patient.identifier",
                "slicing": {
                    "discriminator": [{"type": "value", "path": "system"}],
                    "rules": "closed",
                },
            },
            {
                "id": "Patient.identifier:ipp",
                "path": "Patient.identifier",
                "sliceName": "ipp",
                "max": "1",
            },
            {
                "id": "Patient.identifier:ipp.system",
                "path": "Patient.identifier.system",
                "fixedUri": "urn:oid:1.2.3",
            },
        ],
    )
    validator = Validator(_profiles_dir(tmp_path, profile))
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:oid:1.2.3", "value": "a"},
            {"system": "urn:x", "value": "b"},
        ],
    }
    issues = validator.validate(patient, [profile["url"]])
    assert found(issues) == [("structure", "Patient.identifier[1]")]
    assert "closed" in issues[0].diagnostics


# ---------------------------------------------------------------------------------- binding


def test_required_binding_on_a_code(validator: Validator) -> None:
    task = example("pathway-task/valid")
    task["status"] = "ready"  # a base task-status code the pathway value set leaves out
    issues = validator.validate(task, [CPTS + "pathway-task"])
    assert found(issues) == [("code-invalid", "Task.status")]


def test_required_binding_on_a_coding_checks_its_system(validator: Validator) -> None:
    task = example("pathway-task/valid")
    task["extension"][0]["valueCoding"]["system"] = "http://example.org/pathways"
    issues = validator.validate(task, [CPTS + "pathway-task"])
    assert found(issues) == [("code-invalid", "Task.extension[0].valueCoding")]


def test_required_binding_on_a_codeable_concept(validator: Validator) -> None:
    letter = example("discharge-documentreference/valid")
    letter["type"]["coding"].append({"system": "http://loinc.org", "code": "18842-5"})
    assert validator.validate(letter, [CPTS + "discharge-documentreference"]) == []
    letter["type"] = {"text": "Lettre de liaison"}
    issues = validator.validate(letter, [CPTS + "discharge-documentreference"])
    assert found(issues) == [
        ("value", "DocumentReference.type"),
        ("code-invalid", "DocumentReference.type"),
    ]


# ------------------------------------------------------------------------------- invariants


def _reliability(code: str) -> dict[str, Any]:
    return {
        "url": FR + "fr-core-identity-reliability",
        "extension": [
            {
                "url": "identityReliability",
                "valueCoding": {
                    "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445",
                    "code": code,
                },
            }
        ],
    }


@pytest.mark.parametrize("code", ["VIDE", "PROV", "DOUTE", "FICTI", "DOUT", "FICT"])
def test_an_ins_requires_a_validated_identity(validator: Validator, code: str) -> None:
    patient = example("fr-core-patient/valid")
    patient["extension"] = [_reliability(code)]
    issues = validator.validate(patient, [FR + "fr-core-patient"])
    assert found(issues) == [("invariant", "Patient")]
    assert issues[0].diagnostics.startswith("cpts-patient-1")
    del patient["identifier"][0]  # no INS: any reliability will do
    assert validator.validate(patient, [FR + "fr-core-patient"]) == []


def test_a_social_security_number_is_not_an_ins(validator: Validator) -> None:
    patient = example("fr-core-patient/valid")
    patient["extension"] = [_reliability("PROV")]
    patient["identifier"][0] = {
        "use": "official",
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NH"}]
        },
        "system": "urn:oid:1.2.250.1.213.1.4.8",
        "value": "279035121518989",
    }
    assert validator.validate(patient, [FR + "fr-core-patient"]) == []


def test_a_validated_identity_requires_an_ins(validator: Validator) -> None:
    patient = example("fr-core-patient-ins/valid")
    patient["identifier"][0]["use"] = "secondary"  # fr-core-1 looks for an official INS-NIR
    issues = validator.validate(patient, [FR + "fr-core-patient-ins"])
    keys = [i.diagnostics.split(":")[0] for i in issues if i.code == "invariant"]
    assert keys == ["fr-core-1", "fr-core-2"]
    patient["extension"] = [_reliability("PROV")]  # PROV with an INS: refused the other way
    keys = [
        i.diagnostics.split(":")[0]
        for i in validator.validate(patient, [FR + "fr-core-patient-ins"])
        if i.code == "invariant"
    ]
    assert keys == ["cpts-patient-1"]


def test_a_derived_profile_enforces_the_rules_of_its_base(validator: Validator) -> None:
    patient = example("fr-core-patient-ins/valid")
    patient["generalPractitioner"] = [{"reference": "Device/d1"}]  # a rule of fr-core-patient
    issues = validator.validate(patient, [FR + "fr-core-patient-ins"])
    assert found(issues) == [("structure", "Patient.generalPractitioner[0]")]


def test_invariant_on_an_element(validator: Validator) -> None:
    practitioner = example("fr-core-practitioner/valid")
    practitioner["identifier"][0]["value"] = "1000000001A"
    practitioner["identifier"][1]["value"] = "81000000001A"
    issues = validator.validate(practitioner, [FR + "fr-core-practitioner"])
    assert found(issues) == [("invariant", "Practitioner.identifier[0]")]


def test_warning_invariant_does_not_make_an_error(validator: Validator) -> None:
    issues = validator.validate(
        example("pathway-task/warning-completed-undated"), [CPTS + "pathway-task"]
    )
    assert [(i.severity, i.code) for i in issues] == [("warning", "invariant")]
    assert errors(issues) == []


def test_invariant_beyond_the_compiled_subset_runs_on_fhirpathpy(validator: Validator) -> None:
    renewal = example("renewal-medicationrequest/valid")
    renewal["dispenseRequest"]["validityPeriod"]["end"] = "2027-12-02"
    issues = validator.validate(renewal, [CPTS + "renewal-medicationrequest"])
    assert found(issues) == [("invariant", "MedicationRequest")]
    assert issues[0].diagnostics.startswith("cpts-renewal-1")


def test_invariant_that_cannot_be_evaluated_is_an_error(tmp_path: Path) -> None:
    expression = "(id | 'other') and true"  # two items where a Boolean is expected
    elements = [{"id": "Patient", "path": "Patient", "constraint": [_constraint(expression)]}]
    profile = _profile("broken", "Patient", elements)
    validator = Validator(_profiles_dir(tmp_path, profile))
    issues = validator.validate({"resourceType": "Patient", "id": "x"}, [profile["url"]])
    assert [(i.severity, i.code, i.expression) for i in issues] == [
        ("error", "invariant", "Patient")
    ]
    assert "could not be evaluated" in issues[0].diagnostics


# ----------------------------------------------------------------------- reference targets


@pytest.mark.parametrize(
    ("reference", "allowed"),
    [
        ({"reference": "Practitioner/gp-martin"}, True),
        ({"reference": "https://other.example/fhir/Practitioner/p1/_history/3"}, True),
        ({"reference": "PractitionerRole/r1"}, True),
        ({"reference": "Patient/pat-leroy"}, False),
        ({"reference": "https://other.example/fhir/Device/d1"}, False),
        ({"reference": "urn:uuid:7f3b2f6e-0000-4000-8000-000000000001"}, True),
        ({"identifier": {"system": "https://rpps.esante.gouv.fr", "value": "1"}}, True),
        ({"identifier": {"value": "1"}, "type": "Practitioner"}, True),
        ({"identifier": {"value": "1"}, "type": "RelatedPerson"}, False),
        ({"reference": "#gp"}, True),
        ({"reference": "#someone"}, False),
    ],
)
def test_reference_target_types(validator: Validator, reference: dict, allowed: bool) -> None:
    patient = example("fr-core-patient/valid")
    patient["contained"] = [
        {"resourceType": "Practitioner", "id": "gp", "name": [{"family": "Martin"}]},
        {"resourceType": "RelatedPerson", "id": "someone", "patient": {"reference": "#"}},
    ]
    patient["generalPractitioner"] = [reference]
    issues = validator.validate(patient, [FR + "fr-core-patient"])
    assert found(issues) == ([] if allowed else [("structure", "Patient.generalPractitioner[0]")])


# ----------------------------------------------------------------------------- the profiles


def test_unknown_profile_is_an_error(validator: Validator) -> None:
    issues = validator.validate(example("pathway-task/valid"), ["https://example.org/Task-x"])
    assert [(i.severity, i.code) for i in issues] == [("error", "not-supported")]


def test_profile_of_another_type_is_an_error(validator: Validator) -> None:
    issues = validator.validate(example("pathway-task/valid"), [FR + "fr-core-patient"])
    assert [(i.severity, i.code) for i in issues] == [("error", "invalid")]
    issues = validator.validate(example("pathway-task/valid"), [CPTS + "pathway"])
    assert [(i.severity, i.code) for i in issues] == [("error", "invalid")]


def test_versioned_canonicals_and_the_base_definition(validator: Validator) -> None:
    task = example("pathway-task/valid")
    assert validator.validate(task, [CPTS + "pathway-task|0.1.0"]) == []
    assert validator.validate(task, ["http://hl7.org/fhir/StructureDefinition/Task"]) == []
    issues = validator.validate(task, [CPTS + "pathway-task|9.9.9"])
    assert [i.code for i in issues] == ["not-supported"]


def test_every_profile_asked_for_is_checked_once(validator: Validator) -> None:
    patient = example("fr-core-patient-ins/valid")
    del patient["birthDate"]
    patient["generalPractitioner"] = [{"reference": "Patient/p"}]
    profiles = [FR + "fr-core-patient", FR + "fr-core-patient-ins", FR + "fr-core-patient"]
    issues = validator.validate(patient, profiles)
    assert found(issues) == [  # the rule of fr-core-patient, also the INS profile's: once
        ("structure", "Patient.generalPractitioner[0]"),
        ("required", "Patient.birthDate"),
    ]


# ------------------------------------------------------------------- refused at start-up


def _constraint(expression: str) -> dict[str, str]:
    return {"key": "t-1", "severity": "error", "human": "test", "expression": expression}


def _profile(id_: str, type_: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "id": id_,
        "url": f"https://example.org/StructureDefinition/{id_}",
        "version": "1",
        "name": id_.replace("-", ""),
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": type_,
        "baseDefinition": f"http://hl7.org/fhir/StructureDefinition/{type_}",
        "derivation": "constraint",
        "differential": {"element": elements},
    }


def _profiles_dir(root: Path, *definitions: dict[str, Any]) -> Path:
    """A profiles folder with these StructureDefinitions, the shipped value sets and code
    systems, and the base tables."""
    for folder in ("value-sets", "code-systems", "tables"):
        shutil.copytree(PROFILES_DIR / folder, root / folder)
    (root / "structure-definitions").mkdir(parents=True)
    for definition in definitions:
        path = root / "structure-definitions" / f"{definition['id']}.json"
        path.write_text(json.dumps(definition))
    return root


@pytest.mark.parametrize(
    ("element", "refusal"),
    [
        (
            {"id": "Patient.name.family", "path": "Patient.name.family", "maxLength": 10},
            "maxLength",
        ),
        ({"id": "Patient.nickname", "path": "Patient.nickname", "min": 1}, "no such element"),
        (
            {
                "id": "Patient.gender",
                "path": "Patient.gender",
                "binding": {"strength": "required", "valueSet": "http://example.org/vs"},
            },
            "value set http://example.org/vs",
        ),
        (
            {
                "id": "Patient.link.other",
                "path": "Patient.link.other",
                "type": [{"code": "Reference", "targetProfile": ["http://example.org/SD/x"]}],
            },
            "unknown targetProfile",
        ),
        (
            {
                "id": "Patient.identifier",
                "path": "Patient.identifier",
                "slicing": {"discriminator": [{"type": "type", "path": "$this"}]},
            },
            "discriminator type",
        ),
        (
            {
                "id": "Patient.identifier",
                "path": "Patient.identifier",
                "slicing": {
                    "discriminator": [{"type": "value", "path": "system"}],
                    "ordered": True,
                },
            },
            "ordered",
        ),
        ({"id": "Patient.identifier:a", "path": "Patient.identifier", "sliceName": "a"}, "slicing"),
        (
            {
                "id": "Patient.birthDate",
                "path": "Patient.birthDate",
                "constraint": [_constraint("$this.exists()")],
            },
            "invariants",
        ),
    ],
)
def test_rules_that_cannot_be_enforced_fail_the_start_up(
    tmp_path: Path, element: dict[str, Any], refusal: str
) -> None:
    elements = [element]
    if element["id"] == "Patient.identifier" and "slicing" in element:
        slice_ = {"id": "Patient.identifier:a", "path": "Patient.identifier", "sliceName": "a"}
        elements.append(slice_)
    profiles = _profiles_dir(tmp_path, _profile("refused", "Patient", elements))
    with pytest.raises(ValueError, match=refusal):
        Validator(profiles)
