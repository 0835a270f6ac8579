"""Structural validation of a FHIR JSON resource: the first check of every write.

Two passes: a strict walk over the JSON for what the R4 JSON format demands and pydantic lets
through (JSON types of primitives, no null or empty values, `_element` siblings), then the
`fhir.resources.R4B` model for cardinality, required elements, choice types and value formats.
Every problem is reported with its FHIRPath location.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from fhir_server.errors import FhirError, Issue
from fhir_server.formats.xml_format import parse_div
from fhir_server.model.elements import INTEGER_TYPES, Element, ModelClass, elements, model_class
from fhir_server.model.registry import is_resource_type

_PRIMITIVE_EXTENSION = model_class("Element")


def _path(base: str, key: str | int) -> str:
    return f"{base}[{key}]" if isinstance(key, int) else f"{base}.{key}"


def _type_error(element: Element, value: Any) -> str | None:
    kind = element.primitive
    if kind == "boolean":
        ok = isinstance(value, bool)
    elif kind in INTEGER_TYPES:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "decimal":
        ok = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str) and value != ""
    if ok:
        return None
    expected = {"boolean": "a JSON boolean", "decimal": "a JSON number"}.get(
        kind or "", "a JSON integer" if kind in INTEGER_TYPES else "a non-empty JSON string"
    )
    return f"{kind} value must be {expected}, got {value!r}"


def _xhtml_error(value: str) -> str | None:
    """Narrative.div must be one well-formed XHTML <div> (R4 narrative.html)."""
    try:
        parse_div(value)
    except ValueError as exc:
        return str(exc)
    return None


class _Walker:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def error(self, path: str, text: str) -> None:
        self.issues.append(Issue("structure", text, expression=path))

    def resource(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            self.error(path, "a resource must be a JSON object")
            return
        kind = data.get("resourceType")
        if not isinstance(kind, str) or not is_resource_type(kind):
            self.error(path, f"unknown or unsupported resourceType {kind!r}")
            return
        self.complex(model_class(kind), data, path, is_resource=True)

    def complex(self, model: ModelClass, data: dict, path: str, is_resource: bool = False) -> None:
        if not data:
            self.error(path, "empty objects are not allowed")
            return
        table = elements(model)
        for key, value in data.items():
            if key == "resourceType" and is_resource:
                continue
            here = _path(path, key)
            if key.startswith("_"):
                element = table.get(key[1:])
                if element is None or element.primitive is None:
                    self.error(here, f"unknown element {key!r}")
                else:
                    self.primitive_extension(element, value, data.get(key[1:]), here)
                continue
            element = table.get(key)
            if element is None:
                self.error(here, f"unknown element {key!r}")
            elif element.is_list:
                self.repeating(element, value, data.get("_" + key), here)
            elif isinstance(value, list):
                self.error(here, f"{key!r} does not repeat: a single value is expected")
            else:
                self.value(element, value, here)

    def repeating(self, element: Element, value: Any, siblings: Any, path: str) -> None:
        if not isinstance(value, list) or not value:
            self.error(path, "a repeating element must be a non-empty JSON array")
            return
        for index, item in enumerate(value):
            if item is None and element.primitive is not None:
                has_sibling = isinstance(siblings, list) and index < len(siblings)
                if not (has_sibling and siblings[index] is not None):
                    self.error(f"{path}[{index}]", "null without a matching _element entry")
                continue
            self.value(element, item, f"{path}[{index}]")

    def value(self, element: Element, value: Any, path: str) -> None:
        if value is None:
            self.error(path, "null values are not allowed")
        elif element.primitive is not None:
            problem = _type_error(element, value)
            if problem is None and element.primitive == "xhtml":
                problem = _xhtml_error(value)
            if problem:
                self.error(path, problem)
        elif element.is_resource:
            self.resource(value, path)
        elif not isinstance(value, dict):
            self.error(path, f"a {element.model.__name__} must be a JSON object")
        else:
            self.complex(element.model, value, path)

    def primitive_extension(self, element: Element, value: Any, primitive: Any, path: str) -> None:
        if element.is_list:
            if not isinstance(value, list) or not isinstance(primitive, list | None):
                self.error(path, "must be an array aligned with the primitive array")
                return
            if primitive is not None and len(primitive) != len(value):
                self.error(path, "must have as many entries as the primitive array")
            for index, item in enumerate(value):
                if item is not None:
                    self.extension_object(item, f"{path}[{index}]")
        else:
            self.extension_object(value, path)

    def extension_object(self, value: Any, path: str) -> None:
        if isinstance(value, dict):
            self.complex(_PRIMITIVE_EXTENSION, value, path)
        else:
            self.error(path, "must be a JSON object with id and/or extension")


def _location(resource_type: str, loc: tuple[Any, ...]) -> str:
    path = resource_type
    for part in loc:
        if isinstance(part, str) and part.endswith("__ext"):
            part = "_" + part[: -len("__ext")]
        path = _path(path, part)
    return path


def check_resource(data: Any, expected_type: str | None = None) -> ModelClass:
    """Validate `data` as a resource (of `expected_type` when given); raise a 400 FhirError
    listing every problem. Returns the model class of the resource."""
    if not isinstance(data, dict):
        raise FhirError.of(400, "structure", "The body must be a JSON object (a FHIR resource)")
    kind = data.get("resourceType")
    if expected_type is not None and kind != expected_type:
        raise FhirError.of(
            400, "invalid", f"resourceType {kind!r} does not match the endpoint {expected_type!r}"
        )
    walker = _Walker()
    walker.resource(data, str(kind))
    if walker.issues and not is_resource_type(str(kind)):
        raise FhirError(400, walker.issues)
    model = model_class(kind)
    issues = walker.issues
    try:
        model.model_validate(data)
    except ValidationError as exc:
        seen = {issue.expression for issue in issues}
        for err in exc.errors():
            where = _location(kind, err["loc"])
            if err["type"] != "extra_forbidden" and where not in seen:
                issues.append(Issue("structure", err["msg"], expression=where))
    if issues:
        raise FhirError(400, issues)
    return model
