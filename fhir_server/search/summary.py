"""`_summary` and `_elements` (search.html#summary, #elements): subsets of a resource, marked
with the SUBSETTED tag so that nobody takes them for the whole resource."""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server.model.elements import ModelClass, elements, model_class

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
SUMMARY_VALUES = ("true", "false", "text", "data", "count")
_ALWAYS = ("resourceType", "id", "meta")


@cache
def _mandatory(model: ModelClass) -> frozenset[str]:
    """Top-level elements of minimum cardinality 1."""
    return frozenset(name for name, e in elements(model).items() if e.required)


def _mark(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    resource["meta"] = meta
    return resource


def _summary_view(model: Any, data: dict[str, Any]) -> dict[str, Any]:
    table = elements(model)
    out: dict[str, Any] = {}
    for key, value in data.items():
        element = table.get(key.lstrip("_"))
        if key == "resourceType" or (element is not None and element.summary):
            if element is not None and element.model is not None and not element.is_resource:
                value = (
                    [_summary_view(element.model, v) for v in value]
                    if element.is_list
                    else _summary_view(element.model, value)
                )
            out[key] = value
    return out


def subset(
    resource: dict[str, Any], summary: str | None, wanted: list[str] | None
) -> dict[str, Any]:
    """The resource as `_summary`/`_elements` ask; unchanged for `_summary=false` or neither."""
    if summary in (None, "false") and not wanted:
        return resource
    model = model_class(resource["resourceType"])
    table = elements(model)
    required = _mandatory(model)
    if summary == "true":
        out = _summary_view(model, resource)
    elif summary == "text":
        keep = {*_ALWAYS, "text", *required}
        out = {k: v for k, v in resource.items() if k.lstrip("_") in keep}
    elif summary == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
    else:
        keep = {*_ALWAYS, *required, *(wanted or ())}
        out = {
            k: v
            for k, v in resource.items()
            if k.lstrip("_") in keep or getattr(table.get(k.lstrip("_")), "choice", None) in keep
        }
    return _mark(out)
