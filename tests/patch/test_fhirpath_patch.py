"""FHIRPath Patch: every case of the official R4 test file, then this server's own cases."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from lxml import etree

from fhir_server.errors import FhirError
from fhir_server.formats.xml_format import parse_xml
from fhir_server.patch.fhirpath_patch import apply_fhirpath_patch
from tests.shared import SHARED_FIXTURES, shared_fixture

CASES_FILE = SHARED_FIXTURES / "fhir-test-cases" / "r4-fhirpath-patch-tests.xml"
# "both": the case also checks that a diff engine produces <diff> from <input> and <output>;
# "forwards": only applying <diff> is checked. This server applies patches, which both test.
APPLY_MODES = {"both", "forwards"}


def _official_cases() -> list[Any]:
    if not CASES_FILE.exists():
        return [pytest.param(None, id="fixtures-missing")]  # the test skips, or fails in CI
    root = etree.parse(str(CASES_FILE)).getroot()
    return [pytest.param(case, id=case.get("name")) for case in root.iter("case")]


def _resource(case: etree._Element, tag: str) -> dict[str, Any]:
    """The FHIR resource inside <input>, <diff> or <output>, as FHIR JSON."""
    (element,) = [child for child in case.find(tag) if isinstance(child.tag, str)]
    return parse_xml(etree.tostring(element))


@pytest.mark.parametrize("case", _official_cases())
def test_official_case(case: etree._Element | None) -> None:
    if case is None:
        shared_fixture("fhir-test-cases", "r4-fhirpath-patch-tests.xml")
    if case.get("mode") not in APPLY_MODES:
        pytest.skip(f"mode {case.get('mode')!r} does not test applying a patch")
    resource, parameters = _resource(case, "input"), _resource(case, "diff")
    original = copy.deepcopy(resource)
    error = case.find("error")
    if error is None:
        assert apply_fhirpath_patch(resource, parameters) == _resource(case, "output")
    else:
        with pytest.raises(FhirError) as raised:
            apply_fhirpath_patch(resource, parameters)
        assert (raised.value.status, raised.value.issues[0].code) == (422, "processing")
        message = str(raised.value)
        paths = [
            part["valueString"]
            for parameter in parameters["parameter"]
            for part in parameter["part"]
            if part["name"] == "path"
        ]
        assert "FHIRPath Patch operation" in message, error.get("msg")
        assert any(path in message for path in paths), error.get("msg")
    assert resource == original, "the input resource must not be changed"


# --- this server's cases, in FHIR JSON ------------------------------------------------------


def op(type_: str, path: str, **parts: Any) -> dict[str, Any]:
    """One `operation` parameter; `value` is given as the part's own members (value[x]...)."""
    entries: list[dict[str, Any]] = [
        {"name": "type", "valueCode": type_},
        {"name": "path", "valueString": path},
    ]
    for name, content in parts.items():
        if name == "name":
            entries.append({"name": "name", "valueString": content})
        elif name == "value":
            entries.append({"name": "value", **content})
        else:
            entries.append({"name": name, "valueInteger": content})
    return {"name": "operation", "part": entries}


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(operations)}


BIRTH_TIME = {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime"}
PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "birthDate": "1974-12-25",
    "_birthDate": {"extension": [{**BIRTH_TIME, "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
    "name": [
        {
            "family": "Chalmers",
            "given": ["Peter", "James"],
            "_given": [None, {"extension": [{"url": "urn:x", "valueString": "v"}]}],
        }
    ],
    "extension": [
        {"url": "urn:a", "valueString": "a"},
        {"url": "urn:b", "valueString": "b"},
    ],
    "contained": [{"resourceType": "Organization", "id": "org", "name": "Acme"}],
}
OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"text": "weight"},
    "valueString": "heavy",
    "_valueString": {"id": "v1"},
}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`base` with some members replaced (None removes one)."""
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            result.pop(key)
        else:
            result[key] = value
    return result


NAME = PATIENT["name"][0]
OWN_CASES = [
    pytest.param(
        OBSERVATION,
        [op("replace", "Observation.value", value={"valueQuantity": {"value": 70, "unit": "kg"}})],
        _with(
            OBSERVATION,
            valueString=None,
            _valueString=None,
            valueQuantity={"value": 70, "unit": "kg"},
        ),
        id="replace choice element writes the key of the new type",
    ),
    pytest.param(
        OBSERVATION,
        [op("replace", "Observation.value", value={"valueString": "light"})],
        _with(OBSERVATION, valueString="light", _valueString=None),
        id="replace primitive takes the new value's _element (none)",
    ),
    pytest.param(
        OBSERVATION,
        [op("delete", "Observation.value")],
        _with(OBSERVATION, valueString=None, _valueString=None),
        id="delete choice element with its _element",
    ),
    pytest.param(
        OBSERVATION,
        [op("add", "Observation", name="effective", value={"valueDateTime": "2024-01-01"})],
        _with(OBSERVATION, effectiveDateTime="2024-01-01"),
        id="add choice element by its name",
    ),
    pytest.param(
        OBSERVATION,
        [
            op(
                "add",
                "Observation",
                name="component",
                value={
                    "part": [
                        {"name": "code", "valueCodeableConcept": {"text": "systolic"}},
                        {"name": "value", "valueQuantity": {"value": 120}},
                        {"name": "interpretation", "valueCodeableConcept": {"text": "high"}},
                    ]
                },
            )
        ],
        _with(
            OBSERVATION,
            component=[
                {
                    "code": {"text": "systolic"},
                    "valueQuantity": {"value": 120},
                    "interpretation": [{"text": "high"}],
                }
            ],
        ),
        id="add anonymous type with a choice and a repeating part",
    ),
    pytest.param(
        PATIENT,
        [op("delete", "Patient.birthDate")],
        _with(PATIENT, birthDate=None, _birthDate=None),
        id="delete primitive takes its extensions",
    ),
    pytest.param(
        PATIENT,
        [op("replace", "Patient.birthDate", value={"valueDate": "1975-01-01"})],
        _with(PATIENT, birthDate="1975-01-01", _birthDate=None),
        id="replace primitive replaces its extensions",
    ),
    pytest.param(
        PATIENT,
        [
            op(
                "replace",
                "Patient.birthDate",
                value={"valueDate": "1975-01-01", "_valueDate": {"id": "b"}},
            )
        ],
        _with(PATIENT, birthDate="1975-01-01", _birthDate={"id": "b"}),
        id="replace primitive with a value carrying an id",
    ),
    pytest.param(
        PATIENT,
        [op("delete", "Patient.birthDate.extension")],
        _with(PATIENT, _birthDate=None),
        id="delete the extension of a primitive keeps its value",
    ),
    pytest.param(
        PATIENT,
        [op("delete", "Patient.name.given[0]")],
        _with(PATIENT, name=[{**NAME, "given": ["James"], "_given": NAME["_given"][1:]}]),
        id="delete in a primitive array keeps _given aligned",
    ),
    pytest.param(
        PATIENT,
        [op("delete", "Patient.name.given[1]")],
        _with(PATIENT, name=[{"family": "Chalmers", "given": ["Peter"]}]),
        id="delete in a primitive array drops an all-null _given",
    ),
    pytest.param(
        PATIENT,
        [op("insert", "Patient.name[0].given", index=1, value={"valueString": "Jim"})],
        _with(
            PATIENT,
            name=[
                {
                    **NAME,
                    "given": ["Peter", "Jim", "James"],
                    "_given": [None, None, NAME["_given"][1]],
                }
            ],
        ),
        id="insert in a primitive array keeps _given aligned",
    ),
    pytest.param(
        PATIENT,
        [op("move", "Patient.name.given", source=1, destination=0)],
        _with(
            PATIENT,
            name=[{**NAME, "given": ["James", "Peter"], "_given": [NAME["_given"][1], None]}],
        ),
        id="move in a primitive array moves its _given entry",
    ),
    pytest.param(
        PATIENT,
        [
            op(
                "add",
                "Patient.name[0]",
                name="given",
                value={"valueString": "J", "_valueString": {"id": "j"}},
            )
        ],
        _with(
            PATIENT,
            name=[
                {**NAME, "given": ["Peter", "James", "J"], "_given": [*NAME["_given"], {"id": "j"}]}
            ],
        ),
        id="add to a primitive array with an _element",
    ),
    pytest.param(
        PATIENT,
        [op("replace", "Patient.name.given.where($this = 'James')", value={"valueString": "Jim"})],
        _with(PATIENT, name=[{"family": "Chalmers", "given": ["Peter", "Jim"]}]),
        id="replace selected with where",
    ),
    pytest.param(
        PATIENT,
        [op("delete", "Patient.name.given[2]")],
        PATIENT,
        id="index past the values selects nothing, not an _element entry",
    ),
    pytest.param(
        PATIENT,
        [op("delete", "Patient.extension.where(url = 'urn:a')")],
        _with(PATIENT, extension=[{"url": "urn:b", "valueString": "b"}]),
        id="delete an extension by url",
    ),
    pytest.param(
        PATIENT,
        [op("delete", "Patient.extension('urn:b')")],
        _with(PATIENT, extension=[{"url": "urn:a", "valueString": "a"}]),
        id="delete an extension found by the extension function",
    ),
    pytest.param(
        PATIENT,
        [op("replace", "Patient.extension.where(url = 'urn:b').value", value={"valueInteger": 2})],
        _with(PATIENT, extension=[PATIENT["extension"][0], {"url": "urn:b", "valueInteger": 2}]),
        id="replace the value of an extension",
    ),
    pytest.param(
        PATIENT,
        [
            op(
                "replace",
                "Patient.contained.ofType(Organization).name",
                value={"valueString": "Acme 2"},
            )
        ],
        _with(PATIENT, contained=[{"resourceType": "Organization", "id": "org", "name": "Acme 2"}]),
        id="replace inside a contained resource",
    ),
    pytest.param(
        PATIENT,
        [
            op(
                "add",
                "Patient",
                name="contained",
                value={"resource": {"resourceType": "Practitioner", "id": "dr"}},
            )
        ],
        _with(
            PATIENT, contained=[*PATIENT["contained"], {"resourceType": "Practitioner", "id": "dr"}]
        ),
        id="add a contained resource",
    ),
    pytest.param(
        PATIENT,
        [op("delete", "Patient.contained[0].name")],
        _with(PATIENT, contained=[{"resourceType": "Organization", "id": "org"}]),
        id="delete inside a contained resource",
    ),
    pytest.param(
        PATIENT,
        [op("delete", "Patient.gender")],
        PATIENT,
        id="delete of nothing is not an error",
    ),
    pytest.param(
        {"resourceType": "Patient", "id": "p1", "contact": [{"name": {"text": "x"}}]},
        [op("delete", "Patient.contact.name.text")],
        {"resourceType": "Patient", "id": "p1"},
        id="delete removes the elements it leaves empty",
    ),
    pytest.param(
        {"resourceType": "Patient", "id": "p1", "text": {"status": "generated", "div": "<div/>"}},
        [
            op(
                "replace",
                "Patient.text.div",
                value={"valueString": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
            )
        ],
        {
            "resourceType": "Patient",
            "id": "p1",
            "text": {
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
            },
        },
        id="div is a member name after a dot",
    ),
    pytest.param(
        PATIENT,
        [op("replace", "Patient.id", value={"valueId": "p1"})],
        PATIENT,
        id="writing the same id back is allowed",
    ),
]


@pytest.mark.parametrize(("resource", "operations", "expected"), OWN_CASES)
def test_own_case(resource: dict, operations: list[dict], expected: dict) -> None:
    original = copy.deepcopy(resource)
    assert apply_fhirpath_patch(resource, patch(*operations)) == expected
    assert resource == original


MALFORMED = [
    pytest.param({"resourceType": "Patient"}, id="not a Parameters resource"),
    pytest.param([op("delete", "Patient.gender")], id="a list, not a resource"),
    pytest.param({"resourceType": "Parameters", "parameter": {}}, id="parameter not an array"),
    pytest.param(patch({"name": "op", "part": []}), id="parameter not named operation"),
    pytest.param(patch({"name": "operation"}), id="operation without parts"),
    pytest.param(patch(op("remove", "Patient.gender")), id="unknown operation type"),
    pytest.param(patch(op("add", "Patient", value={"valueCode": "male"})), id="add without name"),
    pytest.param(patch(op("add", "Patient", name="gender")), id="add without value"),
    pytest.param(
        patch(op("insert", "Patient.name", value={"valueHumanName": {}})), id="insert without index"
    ),
    pytest.param(patch(op("move", "Patient.name", source=0)), id="move without destination"),
    pytest.param(patch(op("replace", "Patient.gender")), id="replace without value"),
    pytest.param(patch(op("delete", "Patient.gender", index=0)), id="part the type does not take"),
    pytest.param(
        patch({"name": "operation", "part": [{"name": "type", "valueCode": "delete"}]}),
        id="operation without path",
    ),
    pytest.param(
        patch(
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "delete"},
                    {"name": "path", "valueString": "Patient.gender"},
                    {"name": "path", "valueString": "Patient.active"},
                ],
            }
        ),
        id="part given twice",
    ),
    pytest.param(patch(op("delete", "Patient..gender")), id="path not FHIRPath"),
    pytest.param(patch(op("delete", "Patient.name.where(use = 'x'")), id="path with unclosed call"),
    pytest.param(
        patch(op("insert", "Patient.name", index="1", value={"valueHumanName": {}})),
        id="index not an integer",
    ),
    pytest.param(
        patch(op("replace", "Patient.gender", value={"valueCode": "male", "part": []})),
        id="value both typed and parts",
    ),
    pytest.param(
        patch(op("add", "Patient", name="contact", value={"part": [{"valueCode": "x"}]})),
        id="nested part without name",
    ),
    pytest.param(
        patch(op("delete", "Patient.gender"), op("delete", "Patient.gender", name="x")),
        id="second operation malformed",
    ),
]


@pytest.mark.parametrize("parameters", MALFORMED)
def test_malformed_patch_is_400(parameters: Any) -> None:
    with pytest.raises(FhirError) as raised:
        apply_fhirpath_patch(copy.deepcopy(PATIENT), parameters)
    assert (raised.value.status, raised.value.issues[0].code) == (400, "invalid")


INAPPLICABLE = [
    pytest.param(
        op("replace", "Patient.gender", value={"valueCode": "male"}),
        "no element",
        id="replace of nothing",
    ),
    pytest.param(
        op("replace", "Patient.name.given", value={"valueString": "x"}),
        "2 elements",
        id="replace of two",
    ),
    pytest.param(op("delete", "Patient.name.given"), "2 elements", id="delete of two"),
    pytest.param(
        op("add", "Patient.name.given", name="x", value={"valueString": "x"}),
        "2 elements",
        id="add to two",
    ),
    pytest.param(
        op("add", "Patient.birthDate", name="id", value={"valueString": "x"}),
        "primitive",
        id="add into a primitive",
    ),
    pytest.param(
        op("add", "Patient", name="birthDate", value={"valueDate": "2000"}),
        "already exists",
        id="add existing single",
    ),
    pytest.param(
        op("add", "Patient", name="deceased", value={"valueAddress": {}}),
        "Address",
        id="choice type not allowed",
    ),
    pytest.param(
        op("add", "Patient", name="nickname", value={"valueString": "x"}),
        "no element 'nickname'",
        id="unknown element",
    ),
    pytest.param(
        op("add", "Patient", name="maritalStatus", value={"valueCoding": {}}),
        "CodeableConcept",
        id="wrong complex type",
    ),
    pytest.param(
        op("add", "Patient", name="gender", value={"valueCoding": {}}),
        "primitive",
        id="complex into primitive",
    ),
    pytest.param(
        op("add", "Patient", name="contact", value={"valueString": "x"}),
        "primitive",
        id="primitive into complex",
    ),
    pytest.param(
        op(
            "add", "Patient", name="contact", value={"part": [{"name": "nick", "valueString": "x"}]}
        ),
        "nick",
        id="unknown element in parts",
    ),
    pytest.param(
        op("insert", "Patient.name.given", index=3, value={"valueString": "x"}),
        "index 3",
        id="insert past the end",
    ),
    pytest.param(
        op("insert", "Patient.name.given", index=-1, value={"valueString": "x"}),
        "index -1",
        id="insert before the start",
    ),
    pytest.param(
        op("insert", "Patient.name.given[0]", index=0, value={"valueString": "x"}),
        "whole list",
        id="insert into part of a list",
    ),
    pytest.param(
        op("insert", "Patient.birthDate", index=0, value={"valueDate": "2000"}),
        "repeating",
        id="insert into a single element",
    ),
    pytest.param(
        op("insert", "Patient.telecom", index=0, value={"valueContactPoint": {}}),
        "use add",
        id="insert into a missing list",
    ),
    pytest.param(
        op("move", "Patient.name.given", source=2, destination=0),
        "source 2",
        id="move from past the end",
    ),
    pytest.param(
        op("move", "Patient.name.given", source=0, destination=2),
        "destination 2",
        id="move to past the end",
    ),
    pytest.param(op("delete", "Patient"), "resource itself", id="delete the resource"),
    pytest.param(
        op("replace", "Patient", value={"valueString": "x"}),
        "resource itself",
        id="replace the resource",
    ),
    pytest.param(op("replace", "Patient.id", value={"valueId": "p2"}), "id", id="change the id"),
    pytest.param(op("delete", "Patient.id"), "id", id="remove the id"),
    pytest.param(
        op("replace", "Patient.resourceType", value={"valueString": "Group"}),
        "resourceType",
        id="change the resourceType",
    ),
    pytest.param(
        op("delete", "Patient.name.given.count()"),
        "not an element",
        id="path yields a computed value",
    ),
    pytest.param(
        op("delete", "Patient.unknownFunction()"),
        "cannot be evaluated",
        id="path fails to evaluate",
    ),
]


@pytest.mark.parametrize(("operation", "reason"), INAPPLICABLE)
def test_patch_that_does_not_fit_the_resource_is_422(operation: dict, reason: str) -> None:
    """The message names the operation (here the second), its path, and why it failed."""
    parameters = patch(op("replace", "Patient.name.family", value={"valueString": "C"}), operation)
    with pytest.raises(FhirError) as raised:
        apply_fhirpath_patch(copy.deepcopy(PATIENT), parameters)
    error = raised.value
    assert (error.status, error.issues[0].code) == (422, "processing")
    assert error.issues[0].expression == "Parameters.parameter[1]"
    path = operation["part"][1]["valueString"]
    assert f"FHIRPath Patch operation 1 ({operation['part'][0]['valueCode']} at {path!r})" in str(
        error
    )
    assert reason in str(error)


def test_a_failed_patch_changes_nothing() -> None:
    patient = copy.deepcopy(PATIENT)
    with pytest.raises(FhirError):
        apply_fhirpath_patch(
            patient,
            patch(
                op("delete", "Patient.birthDate"),
                op("replace", "Patient.gender", value={"valueCode": "x"}),
            ),
        )
    assert patient == PATIENT
