"""FHIR XML codec: FHIR XML documents <-> the FHIR JSON dicts the server stores.

XML (R4 xml.html) carries the same content as JSON (json.html) with other conventions: primitive
values are `value` attributes, `Element.id` and `Extension.url` are attributes, a repeating
element is a run of siblings (a JSON array), the id and extensions of a primitive sit inside its
element (the JSON `_name` sibling), resources nest inside a wrapper element named after the
property, and the narrative is inline XHTML (a JSON string). XML does not say which elements
repeat nor the JSON type of a primitive, so both directions are driven by the element tables of
`fhir_server.model.elements`, whose order is also the element order XML requires.

Parsing enforces the XML grammar (namespace, known elements and attributes, element order, no
text outside the narrative, no DTD) and leaves content rules (cardinality, required elements,
value formats beyond the JSON type) to `check_resource`, which runs on the result as on any JSON
body.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import cache
from itertools import zip_longest
from typing import Any

from lxml import etree

from fhir_server.errors import FhirError, bad_request
from fhir_server.model.elements import INTEGER_TYPES, Element, ModelClass, elements, model_class
from fhir_server.model.registry import is_resource_type

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_F = f"{{{FHIR_NS}}}"
_DIV = f"{{{XHTML_NS}}}div"
_XSI = "{http://www.w3.org/2001/XMLSchema-instance}"  # xsi:schemaLocation is tolerated on resources
_NO_DTD = "DOCTYPE declarations are not allowed in FHIR XML"

_RESOURCE = model_class("Resource")
_EXTENSION = model_class("Extension")
_ELEMENT = model_class("Element")  # the shape of a primitive's id + extensions (`_name` in JSON)

# No entity is resolved and nothing is fetched. lxml serialises concurrent use of a parser with a
# lock, so one shared parser is safe; XML is the occasional format, not the hot path.
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True, remove_pis=True
)

# Lexical forms (R4 datatypes) of the primitives that are not JSON strings.
_LEXICAL = {
    "boolean": re.compile(r"true|false"),
    "integer": re.compile(r"0|[-+]?[1-9][0-9]*"),
    "decimal": re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"),
}


@dataclass(frozen=True, slots=True)
class _Layout:
    """How the properties of one FHIR type appear in XML."""

    children: dict[str, tuple[int, Element]]  # child element name -> (FHIR order, element)
    attributes: tuple[str, ...]  # properties written as XML attributes
    json_keys: frozenset[str]  # every key a JSON object of this type may hold
    is_resource: bool


@cache
def _layout(model: ModelClass) -> _Layout:
    table = elements(model)
    is_resource = issubclass(model, _RESOURCE)
    attributes: tuple[str, ...] = ()
    if not is_resource:  # Resource.id is an element, Element.id an attribute
        attributes = ("id", "url") if model is _EXTENSION else ("id",)
    children = {
        name: (position, element)
        for position, (name, element) in enumerate(table.items())
        if name not in attributes
    }
    no_ext = (None, "xhtml")  # complex elements and the narrative have no `_name` sibling
    keys = set(table) | {"_" + n for n, (_, e) in children.items() if e.primitive not in no_ext}
    if is_resource:
        keys.add("resourceType")
    return _Layout(children, attributes, frozenset(keys), is_resource)


# A primitive element: `id` and `value` attributes, `extension` children.
_PRIMITIVE = replace(_layout(_ELEMENT), attributes=("id", "value"))


# ---------------------------------------------------------------------------------- XML -> JSON


def parse_xml(data: bytes) -> dict[str, Any]:
    """Read a FHIR XML resource as FHIR JSON. Anything outside the XML format is a 400 naming
    the FHIRPath location and line of the problem."""
    if b"<!DOCTYPE" in data:  # refused before parsing: libxml2 expands entities in attributes
        raise bad_request(_NO_DTD)
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise bad_request(f"Malformed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:  # a DTD the byte test missed (non UTF-8 document)
        raise bad_request(_NO_DTD)
    return _read_resource(root, None)


def _error(el: etree._Element, path: str, text: str) -> FhirError:
    return bad_request(f"{text} (line {el.sourceline})", path)


def _read_resource(el: etree._Element, path: str | None) -> dict[str, Any]:
    name = el.tag[len(_F) :] if el.tag.startswith(_F) else None
    if name is None or not is_resource_type(name):
        where = path or etree.QName(el).localname
        raise _error(el, where, f"<{el.tag}> is not a FHIR resource (namespace {FHIR_NS})")
    return _read_object(_layout(model_class(name)), el, path or name, {"resourceType": name})


def _children(el: etree._Element, path: str) -> Iterator[etree._Element]:
    """The child elements of `el`: FHIR elements hold no text, only whitespace between tags."""
    if el.text and not el.text.isspace():
        raise _error(el, path, f"text content {el.text.strip()!r} is not allowed here")
    for child in el:
        if child.tail and not child.tail.isspace():
            raise _error(child, path, f"text content {child.tail.strip()!r} is not allowed here")
        yield child


def _read_object(
    layout: _Layout, el: etree._Element, path: str, result: dict[str, Any]
) -> dict[str, Any]:
    """Add the properties of `el` to `result`, checking names, namespaces and FHIR order."""
    for key, value in el.attrib.items():
        if key in layout.attributes:
            result[key] = value
        elif not (layout.is_resource and key.startswith(_XSI)):
            raise _error(el, path, f"unknown attribute {key!r}")
    last = -1
    counts: dict[str, int] = {}
    for child in _children(el, path):
        tag = child.tag
        name = tag[len(_F) :] if tag.startswith(_F) else "div" if tag == _DIV else None
        if name is None:
            raise _error(child, path, f"element <{tag}> is not in the FHIR namespace")
        found = layout.children.get(name)
        if found is None:
            raise _error(child, f"{path}.{name}", f"unknown element <{name}>")
        position, element = found
        if (element.primitive == "xhtml") != (tag == _DIV):
            raise _error(child, f"{path}.{name}", f"<{name}> is not in the expected namespace")
        if position < last or (position == last and not element.is_list):
            problem = "is out of order" if position < last else "does not repeat"
            raise _error(child, f"{path}.{name}", f"element <{name}> {problem}")
        last = position
        index = counts[name] = counts.get(name, -1) + 1
        here = f"{path}.{name}[{index}]" if element.is_list else f"{path}.{name}"
        if element.primitive == "xhtml":
            result[name] = _xhtml_text(child)
        elif element.primitive is not None:
            value, extra = _read_primitive(element.primitive, child, here)
            if element.is_list:  # aligned arrays; an all-null side is dropped below
                result.setdefault(name, []).append(value)
                result.setdefault("_" + name, []).append(extra)
            else:
                if value is not None:
                    result[name] = value
                if extra is not None:
                    result["_" + name] = extra
        else:
            if element.is_resource:
                item = _read_wrapped(child, here)
            else:
                item = _read_object(_layout(element.model), child, here, {})
            if element.is_list:
                result.setdefault(name, []).append(item)
            else:
                result[name] = item
    for key in [k for k, v in result.items() if isinstance(v, list) and v.count(None) == len(v)]:
        del result[key]
    return result


def _read_primitive(kind: str, el: etree._Element, path: str) -> tuple[Any, dict | None]:
    extra = _read_object(_PRIMITIVE, el, path, {})
    text = extra.pop("value", None)
    if text is None and not extra:
        raise _error(el, path, "a primitive element needs a value attribute or an extension")
    if text is None:
        return None, extra
    pattern = _LEXICAL.get("integer" if kind in INTEGER_TYPES else kind)
    if pattern is None:
        value: Any = text
    elif not pattern.fullmatch(text):
        raise _error(el, path, f"{text!r} is not a valid {kind}")
    elif kind == "boolean":
        value = text == "true"
    else:
        value = Decimal(text) if kind == "decimal" else int(text)
    return value, extra or None


def _read_wrapped(el: etree._Element, path: str) -> dict[str, Any]:
    """A resource inside its wrapper element (contained, entry.resource, ...)."""
    if el.attrib:
        raise _error(el, path, f"unknown attribute {next(iter(el.attrib))!r}")
    inner = list(_children(el, path))
    if len(inner) != 1:
        raise _error(el, path, f"must hold exactly one resource, found {len(inner)} elements")
    return _read_resource(inner[0], path)


def _xhtml_text(el: etree._Element) -> str:
    """The narrative as JSON holds it: the serialised div, declaring only namespaces it uses."""
    div = copy.deepcopy(el)
    etree.cleanup_namespaces(div)
    return etree.tostring(div, encoding="unicode", with_tail=False)


# ---------------------------------------------------------------------------------- JSON -> XML


def to_xml(resource: dict[str, Any]) -> bytes:
    """Write a (validated) FHIR JSON resource as a UTF-8 FHIR XML document, elements in FHIR
    order. Keys that are not properties of their type raise ValueError."""
    root = _write_resource(resource, None)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _write_resource(resource: dict[str, Any], parent: etree._Element | None) -> etree._Element:
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or not is_resource_type(kind):
        raise ValueError(f"not a FHIR resource: resourceType {kind!r}")
    if parent is None:
        el = etree.Element(_F + kind, nsmap={None: FHIR_NS})
    else:
        el = etree.SubElement(parent, _F + kind)
    _write_object(_layout(model_class(kind)), resource, el)
    return el


def _write_object(layout: _Layout, data: dict[str, Any], el: etree._Element) -> None:
    unknown = data.keys() - layout.json_keys
    if unknown:
        raise ValueError(f"unknown properties {sorted(unknown)} in <{etree.QName(el).localname}>")
    for name in layout.attributes:
        if name in data:
            el.set(name, data[name])
    for name, (_, element) in layout.children.items():
        value = data.get(name)
        if element.primitive == "xhtml":
            if value is not None:
                el.append(parse_div(value))
        elif element.primitive is not None:
            extra = data.get("_" + name)
            if element.is_list:
                for item, item_extra in zip_longest(value or (), extra or ()):
                    _write_primitive(el, name, item, item_extra)
            elif value is not None or extra is not None:
                _write_primitive(el, name, value, extra)
        elif value is not None:
            for item in value if element.is_list else (value,):
                child = etree.SubElement(el, _F + name)
                if element.is_resource:
                    _write_resource(item, child)
                else:
                    _write_object(_layout(element.model), item, child)


def _write_primitive(parent: etree._Element, name: str, value: Any, extra: dict | None) -> None:
    el = etree.SubElement(parent, _F + name)
    if extra is not None:
        _write_object(_layout(_ELEMENT), extra, el)  # id attribute, extension children
    if value is not None:
        if isinstance(value, bool):
            el.set("value", "true" if value else "false")
        else:
            el.set("value", value if isinstance(value, str) else str(value))


def parse_div(text: str) -> etree._Element:
    """The narrative `<div>` of a JSON `Narrative.div`; ValueError unless it is one well-formed
    XHTML div without DTD."""
    if "<!DOCTYPE" in text:
        raise ValueError(_NO_DTD)
    try:
        div = etree.fromstring(text, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"Narrative.div is not well-formed XHTML: {exc}") from None
    if div.tag != _DIV:
        raise ValueError(f"Narrative.div must be a <div> in the {XHTML_NS} namespace")
    return div
