"""Element tables derived once from the `fhir.resources.R4B` models.

The pydantic models validate values, but are lax about JSON types ("true" passes for a boolean)
and cannot tell the XML codec which elements repeat. These tables give, per model class, each
JSON property with its FHIR primitive type or complex model, cardinality and choice group, and
drive the strict JSON check and the XML codec.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from functools import cache

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel

ModelClass = type[FHIRAbstractModel]

# Metadata class of an Annotated field in fhir_core → FHIR primitive type code.
_PRIMITIVES = {
    "Canonical": "canonical",
    "Code": "code",
    "Date": "date",
    "DateTime": "dateTime",
    "Decimal": "decimal",
    "EncodedBytes": "base64Binary",
    "Id": "id",
    "Instant": "instant",
    "Integer": "integer",
    "Markdown": "markdown",
    "Oid": "oid",
    "PositiveInt": "positiveInt",
    "String": "string",
    "Time": "time",
    "UnsignedInt": "unsignedInt",
    "Uri": "uri",
    "Url": "url",
    "UuidVersion": "uuid",
    "Xhtml": "xhtml",
}
INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})


@dataclass(frozen=True, slots=True)
class Element:
    """One JSON property of a FHIR type."""

    name: str
    is_list: bool
    primitive: str | None = None  # FHIR primitive type code, None for complex elements
    model: ModelClass | None = None  # complex type (or Resource for contained resources)
    choice: str | None = None  # choice group, e.g. "value" for valueQuantity
    summary: bool = False  # part of the `_summary=true` view
    required: bool = False  # minimum cardinality 1

    @property
    def is_resource(self) -> bool:
        return self.model is not None and self.model.__name__ == "Resource"


def _strip_optional(annotation: typing.Any) -> typing.Any:
    args = typing.get_args(annotation)
    if type(None) in args:
        return next(a for a in args if a is not type(None))
    return annotation


def _unwrap(annotation: typing.Any) -> tuple[typing.Any, bool]:
    annotation = _strip_optional(annotation)
    if typing.get_origin(annotation) in (list, typing.List):  # noqa: UP006
        return _strip_optional(typing.get_args(annotation)[0]), True
    return annotation, False


@cache
def elements(model: ModelClass) -> dict[str, Element]:
    """JSON property name → Element, in the order FHIR serialises them."""
    table: dict[str, Element] = {}
    by_alias = {f.alias or n: f for n, f in model.model_fields.items()}
    for field_name in model.elements_sequence():
        field = model.model_fields.get(field_name) or by_alias[field_name]
        extra = field.json_schema_extra or {}
        name = field.alias or field_name
        inner, is_list = _unwrap(field.annotation)
        flags = {
            "choice": extra.get("one_of_many"),
            "summary": bool(extra.get("summary_element_property")),
            # fhir.resources flags required primitives; required complex ones are required fields
            "required": bool(extra.get("element_required")) or field.is_required(),
        }
        if inner is bool:
            table[name] = Element(name, is_list, primitive="boolean", **flags)
        elif typing.get_origin(inner) is typing.Annotated:
            meta = type(typing.get_args(inner)[1]).__name__
            table[name] = Element(name, is_list, primitive=_PRIMITIVES[meta], **flags)
        else:
            table[name] = Element(name, is_list, model=inner.get_model_klass(), **flags)
    return table


def model_class(type_name: str) -> ModelClass:
    return get_fhir_model_class(type_name)
