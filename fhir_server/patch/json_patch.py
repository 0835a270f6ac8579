"""JSON Patch (RFC 6902, `application/json-patch+json`) for the PATCH interaction.

The `jsonpatch` library applies the operations; this module only sorts its failures into the
two answers FHIR gives: a body that is not a JSON Patch is a 400 (`invalid`), a well-formed patch
that does not fit this resource (missing target, failing `test`) is a 422 (`processing`). The
whole document is checked before anything is applied, so a malformed operation is reported as
such even when an earlier one would have failed. Operations are then applied one at a time on a
copy, so that every message names the operation that failed.
"""

from __future__ import annotations

import copy
from typing import Any

from jsonpatch import (
    InvalidJsonPatch,
    JsonPatch,
    JsonPatchConflict,
    JsonPatchException,
    JsonPatchTestFailed,
)
from jsonpointer import JsonPointer, JsonPointerException

from fhir_server.errors import FhirError, bad_request

# Members RFC 6902 requires beyond `op` and `path`, which `jsonpatch` only looks for when applying.
_VALUE_OPS = frozenset({"add", "replace", "test"})
_FROM_OPS = frozenset({"move", "copy"})
_IDENTITY = ("resourceType", "id")


def apply_json_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    """Apply a JSON Patch document to a copy of `resource` and return the copy."""
    patches = _parse(operations)
    result: Any = copy.deepcopy(resource)
    for index, (patch, operation) in enumerate(zip(patches, operations, strict=True)):
        label = _label(index, operation)
        result = _apply_one(result, patch, label)
        check_identity_kept(resource, result, label)
    return result


def check_identity_kept(
    original: dict[str, Any], patched: Any, label: str, expression: str | None = None
) -> None:
    """A PATCH edits one resource: it may not turn it into another type or another id.

    Checked after every operation, so the message can name the one that did it.
    """
    if not isinstance(patched, dict):
        raise cannot_apply(f"{label}: the patched document is no longer a JSON object", expression)
    for key in _IDENTITY:
        if patched.get(key) != original.get(key):
            raise cannot_apply(
                f"{label}: a patch may not change the resource's {key} "
                f"({original.get(key)!r} -> {patched.get(key)!r})",
                expression,
            )


def cannot_apply(diagnostics: str, expression: str | None = None) -> FhirError:
    """A well-formed patch that cannot be applied to this resource (HTTP 422)."""
    return FhirError.of(422, "processing", diagnostics, expression)


def _parse(operations: Any) -> list[JsonPatch]:
    if not isinstance(operations, list):
        raise bad_request("A JSON Patch document must be a JSON array of operations")
    return [_parse_operation(index, operation) for index, operation in enumerate(operations)]


def _parse_operation(index: int, operation: Any) -> JsonPatch:
    """One operation as a single-operation `JsonPatch`; structural faults are a 400."""
    try:
        patch = JsonPatch([operation])
        op = operation["op"]
        if op in _VALUE_OPS and "value" not in operation:
            raise InvalidJsonPatch(f"{op!r} needs a 'value' member")
        if op in _FROM_OPS:
            if not isinstance(operation.get("from"), str):
                raise InvalidJsonPatch(f"{op!r} needs a 'from' member holding a JSON Pointer")
            JsonPointer(operation["from"])
    except (InvalidJsonPatch, JsonPointerException) as exc:
        raise bad_request(f"{_label(index, operation)}: {exc}") from None
    return patch


def _apply_one(document: Any, patch: JsonPatch, label: str) -> Any:
    try:
        return patch.apply(document, in_place=True)
    except JsonPatchTestFailed as exc:
        raise cannot_apply(f"{label}: test failed: {exc}") from None
    except (JsonPatchConflict, JsonPointerException) as exc:
        raise cannot_apply(f"{label}: {exc}") from None
    except JsonPatchException as exc:
        raise bad_request(f"{label}: {exc}") from None


def _label(index: int, operation: Any) -> str:
    if isinstance(operation, dict) and isinstance(operation.get("op"), str):
        return f"JSON Patch operation {index} ({operation['op']} {operation.get('path')!r})"
    return f"JSON Patch operation {index}"
