"""Search index rows of one resource version, computed at write time.

Every search parameter of the resource type is evaluated with its FHIRPath expression and each
value found becomes rows of the index table of the parameter's type (search.html, "Search
Parameter Types"). Values are typed: whether a JSON object is a Period, a CodeableConcept or an
Identifier comes from the element tables of `fhir_server.model.elements`, never from its keys.

Evaluation has two paths:

- a fast path for the simple shapes nearly all R4 expressions have (dotted paths, choice
  elements, `ofType(T)`, `as T`, `where(resolve() is T)`, `where(field='literal')`,
  `extension('url')`, `[n]`, `%resource`, top-level and parenthesised `|` unions), walking the
  JSON directly with the element tables;
- `fhirpathpy` with the R4 model for the rest, each top-level union member on its own so that
  results keep their FHIR type, with a `resolve()` that needs no server: it yields a stub of the
  referenced type, which is all `resolve() is T` looks at.

A parameter that cannot be evaluated on a resource is skipped (logged at DEBUG): indexing never
makes a write fail.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from typing import Any

from fhir_server.model.elements import ModelClass, elements, model_class
from fhir_server.model.fhirpath_text import split_top_level, split_union
from fhir_server.model.registry import is_resource_type
from fhir_server.search.normalize import (
    MAX_DATE,
    MAX_STRING,
    MIN_DATE,
    date_range,
    normalize_string,
)
from fhir_server.search.parameters import Registry, SearchParameter
from fhir_server.storage.schema import (
    AUDIT_TRAIL,
    INDEX_TABLES,
    DateIndex,
    NumberIndex,
    QuantityIndex,
    ReferenceIndex,
    StringIndex,
    TokenIndex,
    UriIndex,
    reference_index,
)

__all__ = [
    "SHARED_ROWS",
    "composite_components",
    "evaluate_expression",
    "has_fast_path",
    "index_rows",
    "parse_reference",
]

logger = logging.getLogger(__name__)

# Reference parameters whose rows are, in part, another parameter's rows of one target type:
# R4 defines an AuditEvent's `patient` as `agent.who.where(resolve() is Patient) |
# entity.what.where(resolve() is Patient)`, and `entity` as `entity.what`. The Patient entities
# are indexed once, as `entity`; searches on `patient` read them there too (`search.sql`).
# A read's AuditEvent names each patient it returned: this halves its rows.
SHARED_ROWS = {(AUDIT_TRAIL, "patient"): ("entity", "Patient")}

MAX_URL = 512
MAX_CODE = 255
MAX_TYPE = 64
CURRENCY_SYSTEM = "urn:iso:std:iso:4217"
# Numeric(38, 12) holds 26 digits before the decimal point.
_MAX_NUMBER = Decimal(10) ** 26

QUANTITY_TYPES = frozenset(
    {"Quantity", "Age", "Count", "Distance", "Duration", "SimpleQuantity", "MoneyQuantity"}
)
URI_TYPES = frozenset({"uri", "url", "canonical", "oid", "uuid"})

# A value found by an expression: (JSON value, FHIR type code, model of a complex value).
Node = tuple[Any, str, ModelClass | None]
Rows = list[dict[str, Any]]


# --------------------------------------------------------------------------- element tables


@cache
def _children(model: ModelClass) -> dict[str, tuple[tuple[str, str, ModelClass | None], ...]]:
    """FHIRPath child name → the JSON properties it reads, with their FHIR type and model: one
    for a plain element, one per type for a choice element (`value` → valueQuantity, ...)."""
    table: dict[str, list[tuple[str, str, ModelClass | None]]] = {}
    for key, element in elements(model).items():
        if key.startswith("_"):
            continue
        if element.is_resource:
            entry: tuple[str, str, ModelClass | None] = (key, "Resource", None)
        elif element.model is not None:
            entry = (key, element.model.get_resource_type(), element.model)
        else:
            entry = (key, element.primitive or "string", None)
        table.setdefault(element.choice or key, []).append(entry)
        if element.choice:
            table.setdefault(key, []).append(entry)
    return {name: tuple(entries) for name, entries in table.items()}


@cache
def _resource_model(type_name: str) -> ModelClass | None:
    if not is_resource_type(type_name):
        return None
    try:
        return model_class(type_name)
    except (ValueError, KeyError, AttributeError):
        return None


def _resource_node(resource: Any) -> Node:
    type_name = resource.get("resourceType", "") if isinstance(resource, dict) else ""
    return resource, type_name or "Resource", _resource_model(type_name) if type_name else None


# FHIRPath System types (`ofType(DateTime)` in R4 Observation-code-value-date) → FHIR types.
_SYSTEM_TYPES = {
    "Boolean": frozenset({"boolean"}),
    "String": frozenset(
        {"string", "code", "id", "markdown", "uri", "url", "canonical", "oid", "uuid"}
    ),
    "Integer": frozenset({"integer", "positiveInt", "unsignedInt"}),
    "Decimal": frozenset({"decimal"}),
    "Date": frozenset({"date"}),
    "DateTime": frozenset({"dateTime", "instant"}),
    "Time": frozenset({"time"}),
}


def _is_type(actual: str, wanted: str) -> bool:
    if actual == wanted:
        return True
    if wanted in _SYSTEM_TYPES:
        return actual in _SYSTEM_TYPES[wanted]
    if wanted == "Quantity":
        return actual in QUANTITY_TYPES
    if wanted in ("Resource", "DomainResource"):
        return _resource_model(actual) is not None
    return False


# --------------------------------------------------------------------------- references

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


@dataclass(frozen=True, slots=True)
class ParsedReference:
    target_type: str | None
    target_id: str | None
    url: str | None


@lru_cache(maxsize=4096)
def parse_reference(text: str) -> ParsedReference | None:
    """`Type/id[/_history/n]` → type and id; an absolute URL → itself without `/_history/n` as
    url, with type and id when its last segments look like them (for `resolve() is X`);
    `urn:uuid:`/`urn:oid:` and other URIs → url only; a contained `#id` → None (not indexed)."""
    text = text.strip()
    if not text or text.startswith("#"):
        return None
    absolute = _SCHEME.match(text) is not None
    if text.startswith("urn:"):
        return ParsedReference(None, None, text)
    path = text.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    parts = path.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    target_type = target_id = None
    if len(parts) >= 2 and is_resource_type(parts[-2]) and _ID.fullmatch(parts[-1]):
        target_type, target_id = parts[-2], parts[-1]
    if absolute:  # type and id tell resolve() the target type; the index keeps the url only
        return ParsedReference(target_type, target_id, "/".join(parts))
    if target_type is not None and len(parts) == 2 and "?" not in text:
        return ParsedReference(target_type, target_id, None)
    return ParsedReference(None, None, text)  # not a literal reference we understand


def _declared_type(reference: dict) -> str | None:
    """Reference.type ("Patient", or the StructureDefinition URL of the type)."""
    declared = reference.get("type")
    if isinstance(declared, str) and declared:
        name = declared.rsplit("/", 1)[-1]
        if is_resource_type(name):
            return name
    return None


def _reference_target_type(reference: Any) -> str | None:
    """The type `resolve()` would give for a Reference, without resolving it."""
    if not isinstance(reference, dict):
        return None
    text = reference.get("reference")
    if isinstance(text, str):
        parsed = parse_reference(text)
        if parsed is None:  # contained: the contained resource's type is not looked up
            return None
        if parsed.target_type is not None:
            return parsed.target_type
    return _declared_type(reference)


# --------------------------------------------------------------------------- fast path

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CHILD = re.compile(rf"({_IDENT})(?:\[(\d+)\])?")
_OF_TYPE = re.compile(rf"ofType\(\s*({_IDENT})\s*\)")
_RESOLVE_IS = re.compile(rf"where\(\s*resolve\(\)\s+is\s+({_IDENT})\s*\)")
_WHERE_EQ = re.compile(rf"where\(\s*({_IDENT})\s*=\s*'([^'\\]*)'\s*\)")
_EXTENSION = re.compile(r"extension\(\s*'([^'\\]*)'\s*\)")
_AS = re.compile(rf"(.*\S)\s+as\s+({_IDENT})")


class _NotSimple(ValueError):
    """The expression is outside the fast path's shapes."""


@dataclass(frozen=True, slots=True)
class _Path:
    from_root: bool  # starts at %resource
    type_filter: str | None  # leading type name, e.g. "Patient" in "Patient.name"
    steps: tuple[tuple[str, Any], ...]


def _matching_paren(text: str, start: int) -> int:
    depth, quoted = 0, False
    for index in range(start, len(text)):
        char = text[index]
        if char == "'" and text[index - 1] != "\\":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
    raise _NotSimple(text)


def _simple_paths(expression: str) -> list[str]:
    """The expression as a union of plain paths: top-level `|` split, `(a | b).c` distributed,
    redundant parentheses dropped."""
    result = []
    for part in split_union(expression.strip()):
        if not part:
            raise _NotSimple(expression)
        if part.startswith("("):
            close = _matching_paren(part, 0)
            inner, rest = part[1:close].strip(), part[close + 1 :].strip()
            if rest and not rest.startswith("."):
                raise _NotSimple(expression)
            result.extend(
                _simple_paths(inner)
                if not rest
                else [f"({p}){rest}" if " as " in p else f"{p}{rest}" for p in _simple_paths(inner)]
            )
        else:
            result.append(part)
    return result


def _compile_path(text: str) -> _Path:
    steps: list[tuple[str, Any]] = []
    tail: tuple[str, Any] | None = None
    if text.startswith("("):  # "(x as T).rest"
        close = _matching_paren(text, 0)
        inner, rest = text[1:close].strip(), text[close + 1 :].strip()
        match = _AS.fullmatch(inner)
        if match is None or (rest and not rest.startswith(".")):
            raise _NotSimple(text)
        head = _compile_path(match.group(1))
        steps = [*head.steps, ("ofType", match.group(2))]
        if rest:
            steps.extend(_compile_path(rest[1:]).steps if rest[1:] else ())
        return _Path(head.from_root, head.type_filter, tuple(steps))
    match = _AS.fullmatch(text)
    if match is not None:
        text, tail = match.group(1), ("ofType", match.group(2))
    parts = split_top_level(text, ".")
    from_root, type_filter = False, None
    if parts[0] == "%resource":
        from_root = True
        parts = parts[1:]
    elif re.fullmatch(_IDENT, parts[0]) and parts[0][0].isupper():
        type_filter = parts[0]
        parts = parts[1:]
    for part in parts:
        if (m := _CHILD.fullmatch(part)) is not None:
            steps.append(("child", m.group(1)))
            if m.group(2) is not None:
                steps.append(("index", int(m.group(2))))
        elif (m := _OF_TYPE.fullmatch(part)) is not None:
            steps.append(("ofType", m.group(1)))
        elif (m := _RESOLVE_IS.fullmatch(part)) is not None:
            steps.append(("resolveIs", m.group(1)))
        elif (m := _WHERE_EQ.fullmatch(part)) is not None:
            steps.append(("whereEq", (m.group(1), m.group(2))))
        elif (m := _EXTENSION.fullmatch(part)) is not None:
            steps.append(("child", "extension"))
            steps.append(("whereEq", ("url", m.group(1))))
        else:
            raise _NotSimple(text)
    if tail is not None:
        steps.append(tail)
    if not steps and type_filter is None and not from_root:
        raise _NotSimple(text)
    return _Path(from_root, type_filter, tuple(steps))


def _child(nodes: list[Node], name: str) -> list[Node]:
    found: list[Node] = []
    for value, _, model in nodes:
        if model is None or type(value) is not dict:
            continue
        for key, type_name, sub in _children(model).get(name, ()):
            item = value.get(key)
            if item is None:
                continue
            if type_name == "Resource":
                found.extend(
                    _resource_node(one) for one in (item if type(item) is list else (item,))
                )
            elif type(item) is list:
                found.extend([(one, type_name, sub) for one in item if one is not None])
            else:
                found.append((item, type_name, sub))
    return found


def _field_equals(node: Node, field: str, literal: str) -> bool:
    """`where(field = 'literal')` on one value (a choice `field` reads each of its types)."""
    value, _, model = node
    if type(value) is not dict:
        return False
    if model is None:
        return value.get(field) == literal
    return any(value.get(key) == literal for key, _, _ in _children(model).get(field, ()))


def _run(path: _Path, context: Node, root: Node) -> list[Node]:
    nodes = [root if path.from_root else context]
    if path.type_filter is not None:
        nodes = [n for n in nodes if _is_type(n[1], path.type_filter)]
    for op, arg in path.steps:
        if not nodes:
            break
        if op == "child":
            nodes = _child(nodes, arg)
        elif op == "ofType":
            nodes = [n for n in nodes if _is_type(n[1], arg)]
        elif op == "resolveIs":
            nodes = [
                n
                for n in nodes
                if n[1] == "Reference" and _is_type(_reference_target_type(n[0]) or "", arg)
            ]
        elif op == "whereEq":
            nodes = [n for n in nodes if _field_equals(n, *arg)]
        else:  # index
            nodes = nodes[arg : arg + 1]
    return nodes


# --------------------------------------------------------------------------- fhirpathpy

_FHIRPATH_LOCK = threading.Lock()  # fhirpathpy keeps evaluation state in module globals
_FP_PRIMITIVES = frozenset(
    {
        "boolean",
        "integer",
        "decimal",
        "string",
        "code",
        "id",
        "markdown",
        "uri",
        "url",
        "canonical",
        "oid",
        "uuid",
        "date",
        "dateTime",
        "instant",
        "time",
        "base64Binary",
        "positiveInt",
        "unsignedInt",
        "xhtml",
    }
)


def _fp_resolve(inputs: list[Any]) -> list[Any]:
    """`resolve()` without a server: a stub of the referenced type for each literal reference
    (relative or absolute), or Reference.type for a logical one."""
    from fhirpathpy.engine.nodes import ResourceNode

    stubs = []
    for reference in inputs:
        target = _reference_target_type(reference)
        if target is not None:
            stubs.append(ResourceNode.create_node({"resourceType": target}))
    return stubs


@cache
def _fp_compiled(expression: str) -> Callable[..., list[Any]]:
    import fhirpathpy
    from fhirpathpy.models import models

    options = {
        "returnRawData": True,
        "userInvocationTable": {"resolve": {"fn": _fp_resolve, "arity": {0: []}}},
    }
    return fhirpathpy.compile(expression, models["r4"], options)


def _guess_type(value: Any) -> str:
    """Last resort for values fhirpathpy returned without type (results of a union inside a
    member): plain JSON → FHIR type code."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float | Decimal):
        return "decimal"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        if "resourceType" in value:
            return value["resourceType"]
        keys = value.keys()
        if "coding" in keys:
            return "CodeableConcept"
        if "reference" in keys or ("identifier" in keys and "display" in keys):
            return "Reference"
        if "start" in keys or "end" in keys:
            return "Period"
        if "low" in keys or "high" in keys:
            return "Range"
        if "currency" in keys:
            return "Money"
        if "value" in keys and ("unit" in keys or "code" in keys):
            return "Quantity"
        if "family" in keys or "given" in keys:
            return "HumanName"
        if "line" in keys or "city" in keys or "postalCode" in keys:
            return "Address"
        if "system" in keys and "value" in keys:
            return "Identifier"
        if "system" in keys or "code" in keys:
            return "Coding"
    return "Element"


@cache
def _path_type(path: str) -> tuple[str, ModelClass | None] | None:
    """FHIR type and model of the element at a fhirpathpy type path: a type name ("Quantity",
    "code") or, for backbone elements, an element path ("DocumentReference.relatesTo")."""
    if path.startswith("FHIR."):
        path = path[5:]
    if "." not in path:
        if path in _FP_PRIMITIVES:
            return path, None
        try:
            return path, model_class(path)
        except (ValueError, KeyError, AttributeError):
            return None
    head, *names = path.split(".")
    found = _path_type(head)
    for name in names:
        if found is None or found[1] is None:
            return None
        entries = _children(found[1]).get(name)
        if not entries or len(entries) != 1 or entries[0][1] == "Resource":
            return None
        found = entries[0][1], entries[0][2]
    return found


def _fp_node(item: Any) -> Node | None:
    """A fhirpathpy result as a typed value."""
    from fhirpathpy.engine.nodes import FP_Type, ResourceNode

    if isinstance(item, ResourceNode):
        value = item.data
        if value is None:
            return None
        if isinstance(value, dict) and "resourceType" in value:
            return _resource_node(value)
        typed = _path_type(item.path) if isinstance(item.path, str) else None
        if typed is None:
            type_name = _guess_type(value)
            typed = _path_type(type_name) if isinstance(value, dict) else (type_name, None)
        return value, *(typed or (_guess_type(value), None))
    if isinstance(item, FP_Type):
        return str(item), "string", None
    if item is None:
        return None
    return item, _guess_type(item), None


# --------------------------------------------------------------------------- compiled expressions


_EXISTS_NOT_FALSE = re.compile(r"(.+?)\.exists\(\)\s+and\s+(.+?)\s*!=\s*false")

FastEvaluator = Callable[[Node, Node], list[Node]]


def _fast_union(paths: tuple[_Path, ...]) -> FastEvaluator:
    if len(paths) == 1:
        path = paths[0]
        return lambda context, root: _run(path, context, root)

    def union(context: Node, root: Node) -> list[Node]:
        found: list[Node] = []
        for path in paths:
            found.extend(_run(path, context, root))
        return found

    return union


def _fast_evaluator(text: str) -> FastEvaluator:
    """The fast evaluation of `text`, or _NotSimple."""
    match = _EXISTS_NOT_FALSE.fullmatch(text.strip())
    if match is not None:  # Patient-deceased: "X.exists() and X != false"
        if match.group(1).strip() != match.group(2).strip():
            raise _NotSimple(text)
        operand = _fast_union(tuple(_compile_path(p) for p in _simple_paths(match.group(1))))

        def exists_not_false(context: Node, root: Node) -> list[Node]:
            found = operand(context, root)
            # `{} != false` is empty and `false and {}` false; one false item gives false.
            value = bool(found) and not (len(found) == 1 and found[0][0] is False)
            return [(value, "boolean", None)]

        return exists_not_false
    return _fast_union(tuple(_compile_path(p) for p in _simple_paths(text)))


class _Expression:
    """One FHIRPath expression, compiled once: the fast path when its shape allows, fhirpathpy
    otherwise (one compiled function per top-level union member, built on first use)."""

    __slots__ = ("_slow", "fast", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._slow: list[Callable[..., list[Any]]] | None = None
        self.fast: FastEvaluator | None
        try:
            self.fast = _fast_evaluator(text)
        except (_NotSimple, re.error):
            self.fast = None

    def evaluate(self, context: Node, root: Node, *, fhirpath: bool = False) -> list[Node]:
        if self.fast is not None and not fhirpath:
            return self.fast(context, root)
        return [
            node
            for item in self.evaluate_raw(context[0], root[0])
            if (node := _fp_node(item)) is not None
        ]

    def evaluate_raw(self, context: Any, resource: Any) -> list[Any]:
        """fhirpathpy results (ResourceNode or plain values) on `context` (a resource or a
        fhirpathpy ResourceNode)."""
        if self._slow is None:
            self._slow = [_fp_compiled(p) for p in split_union(self.text)]
        variables = {"resource": resource, "rootResource": resource}
        found: list[Any] = []
        with _FHIRPATH_LOCK:
            for function in self._slow:
                found.extend(function(context, variables))
        return found


@cache
def _expression(text: str) -> _Expression:
    return _Expression(text)


def has_fast_path(expression: str) -> bool:
    """Whether `expression` is evaluated without fhirpathpy."""
    return _expression(expression).fast is not None


def evaluate_expression(
    expression: str, resource: dict[str, Any], *, fhirpath: bool = False
) -> list[tuple[Any, str]]:
    """(value, FHIR type) of each item `expression` selects in `resource`; `fhirpath=True`
    forces fhirpathpy (the tests compare both paths)."""
    root = _resource_node(resource)
    return [(v, t) for v, t, _ in _expression(expression).evaluate(root, root, fhirpath=fhirpath)]


# --------------------------------------------------------------------------- values → rows


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _cut(value: Any, size: int) -> str | None:
    return value[:size] if isinstance(value, str) and value else None


def _strings(value: Any) -> Iterator[str]:
    """A string, or each string of a list of strings."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        yield from (v for v in value if isinstance(v, str))


def _string_rows(nodes: Iterable[Node], local_zone: tzinfo) -> Rows:
    texts: list[str] = []
    for value, type_name, _ in nodes:
        if type_name == "HumanName" and isinstance(value, dict):
            for key in ("text", "family", "given", "prefix", "suffix"):
                texts.extend(_strings(value.get(key)))
        elif type_name == "Address" and isinstance(value, dict):
            for key in ("text", "line", "city", "district", "state", "postalCode", "country"):
                texts.extend(_strings(value.get(key)))
        elif isinstance(value, str):
            texts.append(value)
        else:
            logger.debug("string index: %s values are not indexed", type_name)
    rows = []
    for text in texts:
        normalized = normalize_string(text)
        if normalized:
            rows.append({"value_normalized": normalized, "value_exact": text[:MAX_STRING]})
    return rows


def _token(
    system: Any = None,
    code: Any = None,
    text: Any = None,
    type_system: Any = None,
    type_code: Any = None,
) -> dict[str, Any]:
    return {
        "system": _cut(system, MAX_CODE),
        "code": _cut(code, MAX_CODE),
        "text_normalized": (normalize_string(text) or None) if _text(text) else None,
        "type_system": _cut(type_system, MAX_CODE),
        "type_code": _cut(type_code, MAX_CODE),
    }


def _codings(concept: dict) -> list[dict]:
    codings = concept.get("coding")
    return [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []


def _token_rows(nodes: Iterable[Node], local_zone: tzinfo) -> Rows:
    rows: Rows = []
    seen: set[tuple[Any, Any, Any]] = set()  # an AuditEvent repeats one Coding per entity
    for value, type_name, _ in nodes:
        if isinstance(value, bool):
            rows.append(_token(code="true" if value else "false"))
        elif isinstance(value, str):
            rows.append(_token(code=value))
        elif isinstance(value, int | float | Decimal):
            rows.append(_token(code=str(value)))
        elif not isinstance(value, dict):
            continue
        elif type_name == "Coding":
            key = (value.get("system"), value.get("code"), value.get("display"))
            if key not in seen:
                seen.add(key)
                rows.append(_token(*key))
        elif type_name == "CodeableConcept":
            text = _text(value.get("text"))
            codings = _codings(value)
            for coding in codings:
                display = _text(coding.get("display"))
                rows.append(_token(coding.get("system"), coding.get("code"), text or display))
                # `:text` also matches Coding.display: keep the displays `text` hides.
                if text and display and normalize_string(display) != normalize_string(text):
                    rows.append(_token(text=display))
            if text and not codings:
                rows.append(_token(text=text))
        elif type_name == "Identifier":
            kind = value.get("type") if isinstance(value.get("type"), dict) else {}
            type_text = kind.get("text")
            type_codings = _codings(kind)
            system, code = value.get("system"), value.get("value")
            for coding in type_codings or [{}]:
                rows.append(
                    _token(system, code, type_text, coding.get("system"), coding.get("code"))
                )
        elif type_name == "ContactPoint":
            # search.html token table: ContactPoint.value as code, no system.
            rows.append(_token(code=value.get("value")))
        else:
            logger.debug("token index: %s values are not indexed", type_name)
    return [r for r in rows if r["system"] or r["code"] or r["text_normalized"]]


def _reference_rows(nodes: Iterable[Node], local_zone: tzinfo) -> Rows:
    rows: Rows = []
    for value, type_name, _ in nodes:
        target_type = target_id = url = identifier_system = identifier_value = None
        if isinstance(value, str):
            if type_name not in URI_TYPES:
                logger.debug("reference index: %s values are not indexed", type_name)
                continue
            url = value.split("|", 1)[0]  # canonical: the version is not part of the target
        elif not isinstance(value, dict):
            continue
        elif type_name == "Reference":
            text = value.get("reference")
            parsed = parse_reference(text) if isinstance(text, str) else None
            if parsed is not None and parsed.url is not None:
                # An absolute URL may name another server: it never matches a local Type/id.
                url = parsed.url
            elif parsed is not None:
                target_type, target_id = parsed.target_type, parsed.target_id
            identifier = value.get("identifier")
            if isinstance(identifier, dict):
                identifier_system = identifier.get("system")
                identifier_value = identifier.get("value")
        elif "resourceType" in value:  # a resource (Bundle.entry[0].resource)
            if isinstance(value.get("id"), str):
                target_type, target_id = value["resourceType"], value["id"]
        else:
            logger.debug("reference index: %s values are not indexed", type_name)
            continue
        row = {
            "target_type": _cut(target_type, MAX_TYPE),
            "target_id": _cut(target_id, MAX_TYPE),
            "url": _cut(url, MAX_URL),
            "identifier_system": _cut(identifier_system, MAX_CODE),
            "identifier_value": _cut(identifier_value, MAX_CODE),
        }
        if row["target_id"] or row["url"] or row["identifier_system"] or row["identifier_value"]:
            rows.append(row)
    return rows


def _bounds(value: Any, local_zone: tzinfo) -> tuple[datetime, datetime] | None:
    if not isinstance(value, str):
        return None
    try:
        return date_range(value, local_zone)
    except (ValueError, OverflowError):
        logger.debug("date index: %r is not a date", value)
        return None


def _period(value: dict, local_zone: tzinfo) -> tuple[datetime, datetime] | None:
    start = _bounds(value.get("start"), local_zone)
    end = _bounds(value.get("end"), local_zone)
    if start is None and end is None:
        return None
    return (start[0] if start else MIN_DATE), (end[1] if end else MAX_DATE)


def _timing(value: dict, local_zone: tzinfo) -> tuple[datetime, datetime] | None:
    """The outer limits of a Timing: its events and repeat.boundsPeriod."""
    ranges = [r for e in _strings(value.get("event")) if (r := _bounds(e, local_zone))]
    repeat = value.get("repeat")
    if isinstance(repeat, dict) and isinstance(repeat.get("boundsPeriod"), dict):
        bounds = _period(repeat["boundsPeriod"], local_zone)
        if bounds is not None:
            ranges.append(bounds)
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _date_rows(nodes: Iterable[Node], local_zone: tzinfo) -> Rows:
    rows: Rows = []
    for value, type_name, _ in nodes:
        if isinstance(value, str):
            bounds = _bounds(value, local_zone)
        elif not isinstance(value, dict):
            bounds = None
        elif type_name == "Period":
            bounds = _period(value, local_zone)
        elif type_name == "Timing":
            bounds = _timing(value, local_zone)
        else:
            logger.debug("date index: %s values are not indexed", type_name)
            bounds = None
        if bounds is not None:
            rows.append({"low": bounds[0], "high": bounds[1]})
    return rows


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() and abs(number) < _MAX_NUMBER else None


def _number_rows(nodes: Iterable[Node], local_zone: tzinfo) -> Rows:
    numbers: list[Any] = []
    for value, type_name, _ in nodes:
        if isinstance(value, dict):
            if type_name == "Range":
                numbers.extend(
                    v.get("value") for k in ("low", "high") if isinstance(v := value.get(k), dict)
                )
            elif type_name in QUANTITY_TYPES:
                numbers.append(value.get("value"))
        elif not isinstance(value, str):
            numbers.append(value)
    return [{"value": n} for v in numbers if (n := _decimal(v)) is not None]


def _quantity(value: dict) -> Rows:
    number = _decimal(value.get("value"))
    if number is None:
        return []
    code, unit = _text(value.get("code")), _text(value.get("unit"))
    rows = [
        {
            "value": number,
            "system": _cut(value.get("system"), MAX_CODE),
            "code": _cut(code, MAX_CODE),
        }
    ]
    # `value||unit` matches Quantity.code or Quantity.unit (search.html#quantity).
    if unit and unit != code:
        rows.append({"value": number, "system": None, "code": unit[:MAX_CODE]})
    return rows


def _quantity_rows(nodes: Iterable[Node], local_zone: tzinfo) -> Rows:
    rows: Rows = []
    for value, type_name, _ in nodes:
        if not isinstance(value, dict):
            number = _decimal(value) if not isinstance(value, str) else None
            if number is not None:
                rows.append({"value": number, "system": None, "code": None})
        elif type_name in QUANTITY_TYPES:
            rows.extend(_quantity(value))
        elif type_name == "Money":
            number = _decimal(value.get("value"))
            if number is not None:
                rows.append(
                    {
                        "value": number,
                        "system": CURRENCY_SYSTEM,
                        "code": _cut(value.get("currency"), MAX_CODE),
                    }
                )
        elif type_name == "Range":  # low and high as two values
            for key in ("low", "high"):
                if isinstance(value.get(key), dict):
                    rows.extend(_quantity(value[key]))
        else:  # SampledData and others
            logger.debug("quantity index: %s values are not indexed", type_name)
    return rows


def _uri_rows(nodes: Iterable[Node], local_zone: tzinfo) -> Rows:
    return [{"value": value[:MAX_URL]} for value, _, _ in nodes if isinstance(value, str) and value]


_BUILDERS: dict[str, tuple[type, Callable[[Iterable[Node], tzinfo], Rows]]] = {
    "string": (StringIndex, _string_rows),
    "token": (TokenIndex, _token_rows),
    "reference": (ReferenceIndex, _reference_rows),
    "date": (DateIndex, _date_rows),
    "number": (NumberIndex, _number_rows),
    "quantity": (QuantityIndex, _quantity_rows),
    "uri": (UriIndex, _uri_rows),
}


# --------------------------------------------------------------------------- parameters


# R4 errata: DocumentReference-relationship gives its two components each other's definition
# (`code` is the token DocumentReference-relation, `target` the reference -relatesto).
_COMPONENT_TYPE_ERRATA = {
    ("http://hl7.org/fhir/SearchParameter/DocumentReference-relationship", "code"): "token",
    ("http://hl7.org/fhir/SearchParameter/DocumentReference-relationship", "target"): "reference",
}


def composite_components(registry: Registry, param: SearchParameter) -> list[tuple[str, str, str]]:
    """(row parameter `code$j`, search type, expression relative to the element) of each
    component of a composite parameter; LookupError when a definition is unknown. The search
    side must read the component types from here too (R4 errata are corrected)."""
    components = []
    for j, component in enumerate(param.component):
        type_ = _COMPONENT_TYPE_ERRATA.get((param.url, component.expression.strip()))
        if type_ is None:
            definition = registry.by_definition(component.definition, param.resource_type)
            if definition is None or definition.type not in _BUILDERS:
                raise LookupError(f"component {component.definition} of {param.url} not found")
            type_ = definition.type
        components.append((f"{param.code}${j}", type_, component.expression))
    return components


# Rows of one component expression on one element, shared by the composites of one resource
# (Observation's eight composites read `code` of the same elements).
_Memo = dict[tuple[int, str, str], Rows]


def _composite_rows(
    registry: Registry, param: SearchParameter, root: Node, local_zone: tzinfo, memo: _Memo
) -> list[tuple[type, str, int | None, Rows]]:
    """Rows of each component (`code$j`) of each element the composite's expression selects
    (instance `k`), so that a match can require all components from the same element."""
    components = [
        (code, type_, *_BUILDERS[type_], _expression(expression))
        for code, type_, expression in composite_components(registry, param)
    ]
    container = _expression(param.expression)
    produced: list[tuple[type, str, int | None, Rows]] = []
    if container.fast is not None and all(c[4].fast is not None for c in components):
        for k, element in enumerate(container.fast(root, root)):
            for code, type_, table, build, expression in components:
                key = (id(element[0]), type_, expression.text)
                rows = memo.get(key)
                if rows is None:
                    nodes = expression.fast(element, root)  # type: ignore[misc]
                    rows = memo[key] = build(nodes, local_zone) if nodes else []
                if rows:
                    produced.append((table, code, k, rows))
        return produced
    for k, raw in enumerate(container.evaluate_raw(root[0], root[0])):
        for code, _, table, build, expression in components:
            nodes = [
                n for i in expression.evaluate_raw(raw, root[0]) if (n := _fp_node(i)) is not None
            ]
            if nodes:
                produced.append((table, code, k, build(nodes, local_zone)))
    return produced


def index_rows(
    registry: Registry, resource_type: str, resource: dict, local_zone: tzinfo
) -> dict[type, list[dict]]:
    """Index table class → rows (column → value; `pk` and `resource_pk` left to the caller)
    for every search parameter of `resource_type`. Every table of `INDEX_TABLES` is a key;
    the references of an AuditEvent go to the audit trail's own table (`reference_index`).

    Rows of one parameter are deduplicated; a parameter that cannot be evaluated on this
    resource is skipped (logged at DEBUG), never failing the write."""
    result: dict[type, list[dict]] = {table: [] for table in INDEX_TABLES}
    references = reference_index(resource_type)
    root = (resource, resource_type, _resource_model(resource_type))
    memo: _Memo = {}
    for param in registry.for_type(resource_type).values():
        try:
            if param.type == "composite":
                produced = _composite_rows(registry, param, root, local_zone, memo)
            else:
                builder = _BUILDERS.get(param.type)
                if builder is None:  # special
                    continue
                expression = _expression(param.expression)
                if expression.fast is not None:
                    nodes = expression.fast(root, root)
                else:
                    nodes = expression.evaluate(root, root)
                if not nodes:
                    continue
                produced = [(builder[0], param.code, None, builder[1](nodes, local_zone))]
        except Exception:  # a parameter never makes a write fail
            logger.debug(
                "search parameter %s not indexed on %s/%s",
                param.code,
                resource_type,
                resource.get("id"),
                exc_info=True,
            )
            continue
        seen: set[tuple[Any, ...]] = set()
        for table, code, composite, rows in produced:
            target = result[references if table is ReferenceIndex else table]
            for row in rows:
                key = (code, composite, *row.values())
                if key not in seen:
                    seen.add(key)
                    target.append(
                        {"type": resource_type, "param": code, "composite": composite, **row}
                    )
    for (shared_type, code), (other, target_type) in SHARED_ROWS.items():
        if resource_type == shared_type:
            result[references] = _without_shared(result[references], code, other, target_type)
    return result


def _without_shared(rows: list[dict], code: str, other: str, target_type: str) -> list[dict]:
    """`rows` less those of `code` that repeat a row of `other` targeting `target_type`."""

    def value(row: dict) -> tuple[Any, ...]:
        return tuple(v for k, v in row.items() if k != "param")

    covered = {value(r) for r in rows if r["param"] == other and r["target_type"] == target_type}
    return [r for r in rows if r["param"] != code or value(r) not in covered]
