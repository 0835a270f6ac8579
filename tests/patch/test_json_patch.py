"""JSON Patch: every case of the official R4 test file, then what FHIR adds to RFC 6902."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest

from fhir_server.errors import FhirError
from fhir_server.patch.json_patch import apply_json_patch
from tests.shared import SHARED_FIXTURES, shared_fixture

CASES_FILE = SHARED_FIXTURES / "fhir-test-cases" / "r4-json-patch-tests.json"


def _official_cases() -> list[Any]:
    if not CASES_FILE.exists():
        return [pytest.param(None, id="fixtures-missing")]  # the test skips, or fails in CI
    cases = json.loads(CASES_FILE.read_text(encoding="utf-8"))
    return [pytest.param(case, id=case["comment"]) for case in cases]


@pytest.mark.parametrize("case", _official_cases())
def test_official_case(case: dict[str, Any] | None) -> None:
    if case is None:
        shared_fixture("fhir-test-cases", "r4-json-patch-tests.json")
    document = copy.deepcopy(case["doc"])
    if "error" in case:
        with pytest.raises(FhirError) as raised:
            apply_json_patch(document, case["patch"])
        assert raised.value.status == 422, case["error"]
        assert raised.value.issues[0].code == "processing"
        assert "JSON Patch operation 0" in str(raised.value)
    else:
        assert apply_json_patch(document, case["patch"]) == case["expected"]
    assert document == case["doc"], "the input document must not be changed"


PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "name": [{"family": "Chalmers", "given": ["Peter"]}],
    "birthDate": "1974-12-25",
}


def _patient() -> dict[str, Any]:
    return copy.deepcopy(PATIENT)


def _error(operations: Any, resource: dict[str, Any] | None = None) -> FhirError:
    with pytest.raises(FhirError) as raised:
        apply_json_patch(resource or _patient(), operations)
    return raised.value


def test_patches_a_patient_and_leaves_the_input_alone() -> None:
    patient = _patient()
    patched = apply_json_patch(
        patient,
        [
            {"op": "test", "path": "/name/0/family", "value": "Chalmers"},
            {"op": "replace", "path": "/birthDate", "value": "1974-12-26"},
            {"op": "add", "path": "/name/0/given/-", "value": "James"},
            {"op": "remove", "path": "/active"},
            {"op": "add", "path": "/gender", "value": "male"},
        ],
    )
    assert patched == {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
        "birthDate": "1974-12-26",
        "gender": "male",
    }
    assert patient == PATIENT


def test_keeps_decimal_precision() -> None:
    observation = {"resourceType": "Observation", "id": "o1", "status": "final"}
    patch = [{"op": "add", "path": "/valueQuantity", "value": {"value": Decimal("1.50")}}]
    patched = apply_json_patch(observation, patch)
    assert str(patched["valueQuantity"]["value"]) == "1.50"


def test_failing_test_operation_is_422_naming_the_operation() -> None:
    error = _error(
        [
            {"op": "replace", "path": "/active", "value": False},
            {"op": "test", "path": "/birthDate", "value": "2000-01-01"},
        ]
    )
    assert (error.status, error.issues[0].code) == (422, "processing")
    assert "JSON Patch operation 1 (test '/birthDate')" in str(error)


def test_test_operation_does_not_take_true_for_1() -> None:
    resource = {"resourceType": "Basic", "id": "b", "count": 1}
    assert _error([{"op": "test", "path": "/count", "value": True}], resource).status == 422


@pytest.mark.parametrize(
    "operations",
    [
        {"op": "add", "path": "/gender", "value": "male"},
        [{"op": "add", "path": "/gender", "value": "male"}, {"op": "replace", "path": "/id"}],
        [{"op": "remove", "path": "/missing"}, "not an operation"],
        [{"op": "frobnicate", "path": "/gender"}],
        [{"op": "add", "value": "male"}],
        [{"op": "add", "path": "gender", "value": "male"}],
        [{"op": "move", "path": "/gender"}],
        [{"op": "copy", "path": "/gender", "from": "birthDate"}],
    ],
    ids=[
        "not-an-array",
        "missing-value",
        "operation-not-an-object",
        "unknown-op",
        "missing-path",
        "pointer-without-slash",
        "missing-from",
        "bad-from-pointer",
    ],
)
def test_malformed_patch_is_400(operations: Any) -> None:
    """Malformed anywhere in the document is a 400, even after an operation that would fail."""
    error = _error(operations)
    assert (error.status, error.issues[0].code) == (400, "invalid")


@pytest.mark.parametrize(
    ("operation", "reason"),
    [
        ({"op": "remove", "path": "/gender"}, "gender"),
        ({"op": "replace", "path": "/name/3/family", "value": "X"}, "3"),
        ({"op": "add", "path": "/name/5", "value": {"family": "X"}}, "list"),
        ({"op": "move", "from": "/telecom", "path": "/contact"}, "telecom"),
    ],
)
def test_patch_that_does_not_fit_the_resource_is_422(operation: dict, reason: str) -> None:
    """The message names the operation, and (in the library's words) what is missing."""
    error = _error([{"op": "test", "path": "/id", "value": "p1"}, operation])
    assert (error.status, error.issues[0].code) == (422, "processing")
    message = str(error).removeprefix(f"JSON Patch operation 1 ({operation['op']} ")
    assert message != str(error)
    assert reason in message.split(": ", 1)[1]


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "replace", "path": "/id", "value": "p2"},
        {"op": "remove", "path": "/id"},
        {"op": "replace", "path": "/resourceType", "value": "Group"},
        {"op": "move", "from": "/id", "path": "/language"},
        {"op": "replace", "path": "", "value": {"resourceType": "Patient", "id": "other"}},
    ],
)
def test_changing_id_or_resource_type_is_422(operation: dict) -> None:
    error = _error([operation])
    assert (error.status, error.issues[0].code) == (422, "processing")
    assert "may not change the resource's" in str(error)


def test_same_id_may_be_written_back() -> None:
    patched = apply_json_patch(_patient(), [{"op": "replace", "path": "/id", "value": "p1"}])
    assert patched == PATIENT


def test_replacing_the_document_with_a_non_object_is_422() -> None:
    assert _error([{"op": "replace", "path": "", "value": []}]).status == 422
