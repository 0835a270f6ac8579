"""FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html): a `Parameters` resource of operations.

Every `path` is evaluated by fhirpathpy. A patch needs the *place* of what a path selects, not
its value, and fhirpathpy's raw result nodes record where each value was found (`propName`, e.g.
`Patient.contact[0].name.text`). That location is walked again here, with the element tables of
`fhir_server.model`, which also say what fhirpathpy does not: the JSON key a choice element uses
(`Observation.value` is `valueQuantity`), whether an element repeats (`add` appends to a list)
and the type of an anonymous (backbone) value. Each walked location is checked against the node
fhirpathpy returned. A node fhirpathpy leaves unplaced (e.g. a result of `extension(url)`) is
found by identity when it is an object; a primitive there cannot be placed and is refused.

In the FHIR model a primitive and its `_element` sibling (id, extensions) are one element, so
delete removes both, replace puts the new value's own `_value[x]` (or nothing) in place of the
old one, and insert/move/delete in a repeating primitive keep the `_element` array aligned.
Elements a deletion leaves empty are removed, since FHIR JSON has no empty objects.

A malformed patch document is a 400 (`invalid`); a patch that does not fit this resource is a
422 (`processing`). The whole document is checked before any operation is applied.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import fhirpathpy
from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models as fhirpath_models
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_server.errors import bad_request
from fhir_server.model.elements import Element, ModelClass, elements, model_class
from fhir_server.patch.json_patch import cannot_apply, check_identity_kept

_FHIRPATH_MODEL = fhirpath_models["r4"]
_PARTS_BY_TYPE = {
    "add": ("name", "value"),
    "insert": ("value", "index"),
    "delete": (),
    "replace": ("value",),
    "move": ("source", "destination"),
}
# Profiles of Quantity share its JSON shape, so any of them fits a Quantity-typed element.
_QUANTITIES = frozenset({"Quantity", "Age", "Count", "Distance", "Duration", "SimpleQuantity"})
_OPERATOR_WORDS = frozenset({"div", "mod"})
_SEGMENT = re.compile(r"([A-Za-z][A-Za-z0-9]*)(?:\[(\d+)\])?")


class _Malformed(Exception):
    """The patch document itself is wrong (400)."""


class _Inapplicable(Exception):
    """A well-formed operation that cannot be applied to this resource (422)."""


class _Unplaced(Exception):
    """A fhirpathpy location that does not lead to its node; another way is tried."""


# ---------------------------------------------------------------------------------------------
# The patch document


@dataclass(frozen=True)
class _Value:
    """The `value` part: a typed `value[x]`, a `resource`, or anonymous nested `part`s."""

    type_name: str | None = None  # "Quantity" for valueQuantity; None for parts and resources
    data: Any = None
    extension: Any = None  # `_value[x]`: id and extensions of a primitive value
    parts: tuple[tuple[str, _Value], ...] | None = None


@dataclass(frozen=True)
class _Operation:
    type: str
    path: str  # as the client wrote it, for messages
    expression: str  # as fhirpathpy evaluates it
    name: str | None = None
    value: _Value | None = None
    index: int | None = None
    source: int | None = None
    destination: int | None = None


def apply_fhirpath_patch(resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """Apply a FHIRPath Patch to a copy of `resource` and return the copy."""
    operations = _parse(parameters)
    result = copy.deepcopy(resource)
    for number, operation in enumerate(operations):
        label = f"FHIRPath Patch operation {number} ({operation.type} at {operation.path!r})"
        try:
            _APPLY[operation.type](result, operation)
        except _Inapplicable as exc:
            raise cannot_apply(f"{label}: {exc}", f"Parameters.parameter[{number}]") from None
        check_identity_kept(resource, result, label, f"Parameters.parameter[{number}]")
    return result


def _parse(parameters: Any) -> list[_Operation]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise bad_request("A FHIRPath Patch must be a Parameters resource")
    entries = parameters.get("parameter", [])
    if not isinstance(entries, list):
        raise bad_request("Parameters.parameter must be an array", "Parameters.parameter")
    operations = []
    for number, entry in enumerate(entries):
        try:
            operations.append(_parse_operation(entry))
        except _Malformed as exc:
            raise bad_request(
                f"FHIRPath Patch operation {number}: {exc}", f"Parameters.parameter[{number}]"
            ) from None
    return operations


def _parse_operation(entry: Any) -> _Operation:
    if not isinstance(entry, dict) or entry.get("name") != "operation":
        raise _Malformed("every parameter of a FHIRPath Patch must be named 'operation'")
    parts = _parts_by_name(entry.get("part"))
    kind = _string(parts, "type")
    if kind not in _PARTS_BY_TYPE:
        raise _Malformed(f"unknown operation type {kind!r} (add, insert, delete, replace, move)")
    required = ("path", *_PARTS_BY_TYPE[kind])
    if missing := [name for name in required if name not in parts]:
        raise _Malformed(f"a {kind} operation needs the part(s) {', '.join(missing)}")
    if unexpected := sorted(set(parts) - {"type", *required}):
        raise _Malformed(f"a {kind} operation takes no part(s) {', '.join(unexpected)}")
    path = _string(parts, "path")
    return _Operation(
        kind,
        path,
        strict_expression(path),
        name=_string(parts, "name") if "name" in parts else None,
        value=_value(parts["value"]) if "value" in parts else None,
        index=_integer(parts, "index") if "index" in parts else None,
        source=_integer(parts, "source") if "source" in parts else None,
        destination=_integer(parts, "destination") if "destination" in parts else None,
    )


def _parts_by_name(parts: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(parts, list):
        raise _Malformed("an operation needs its parts (type, path, ...)")
    named: dict[str, dict[str, Any]] = {}
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise _Malformed("every part needs a name")
        if part["name"] in named:
            raise _Malformed(f"the part {part['name']!r} is given twice")
        named[part["name"]] = part
    return named


def _typed_keys(part: dict[str, Any]) -> list[str]:
    """The `value[x]` keys of a part, counting a `_value[x]` without its value."""
    return sorted({key.lstrip("_") for key in part if key.lstrip("_").startswith("value")})


def _string(parts: dict[str, dict[str, Any]], name: str) -> str:
    keys = _typed_keys(parts[name])
    value = parts[name].get(keys[0]) if len(keys) == 1 else None
    if not isinstance(value, str) or not value:
        raise _Malformed(f"the part {name!r} needs a string value (e.g. valueString)")
    return value


def _integer(parts: dict[str, dict[str, Any]], name: str) -> int:
    keys = _typed_keys(parts[name])
    value = parts[name].get(keys[0]) if len(keys) == 1 else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Malformed(f"the part {name!r} needs an integer value (valueInteger)")
    return value


def _value(part: dict[str, Any]) -> _Value:
    """A `value` part, or a nested part of an anonymous value, checked all the way down."""
    keys = _typed_keys(part)
    if len(keys) + ("resource" in part) + ("part" in part) != 1:
        raise _Malformed(
            f"the part {part.get('name')!r} needs exactly one of value[x], resource or part"
        )
    if keys:
        type_name = keys[0].removeprefix("value")
        if not type_name[:1].isupper():
            raise _Malformed(f"{keys[0]!r} is not a value[x] name")
        return _Value(type_name, part.get(keys[0]), part.get(f"_{keys[0]}"))
    if "resource" in part:
        if not isinstance(part["resource"], dict) or "resourceType" not in part["resource"]:
            raise _Malformed(f"the part {part.get('name')!r} holds no resource")
        return _Value(data=part["resource"])
    nested = part["part"]
    if not isinstance(nested, list) or not nested:
        raise _Malformed(f"the part {part.get('name')!r} has an empty list of parts")
    named = []
    for child in nested:
        if not isinstance(child, dict) or not isinstance(child.get("name"), str):
            raise _Malformed(f"every part inside {part.get('name')!r} needs a name")
        named.append((child["name"], _value(child)))
    return _Value(parts=tuple(named))


class _RaiseOnSyntaxError(ErrorListener):
    def syntaxError(
        self, recognizer: Any, offendingSymbol: Any, line: int, column: int, msg: str, e: Any
    ) -> None:
        raise _Malformed(f"invalid FHIRPath (column {column + 1}): {msg}")


def strict_expression(path: str) -> str:
    """The path as fhirpathpy should evaluate it, refused if it is not FHIRPath.

    fhirpathpy's parser recovers from syntax errors silently (`Patient..birthDate` selects
    nothing, `Patient.(` selects the Patient), which would turn a typo into a no-op delete or
    a change elsewhere, so its own grammar is run first with an error listener that raises.

    `div` and `mod` are operators in the FHIRPath grammar, yet `Narrative.div` is a FHIR
    element and FHIR writes `Patient.text.div` (so do the official FHIRPath Patch tests, and
    the reference Java engine accepts it). Right after a `.` such a word can only name a
    member, so there it is quoted as an identifier (`` `div` ``) before parsing.
    """
    tokens = [t for t in _lexer(path).getAllTokens() if t.channel == Token.DEFAULT_CHANNEL]
    for before, token in reversed(list(itertools.pairwise(tokens))):
        if before.text == "." and token.text in _OPERATOR_WORDS:
            path = f"{path[: token.start]}`{token.text}`{path[token.stop + 1 :]}"
    parser = FHIRPathParser(CommonTokenStream(_lexer(path)))
    parser.removeErrorListeners()
    parser.addErrorListener(_RaiseOnSyntaxError())
    parser.entireExpression()
    return path


def _lexer(path: str) -> FHIRPathLexer:
    lexer = FHIRPathLexer(InputStream(path))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_RaiseOnSyntaxError())
    return lexer


# ---------------------------------------------------------------------------------------------
# Places in the resource


@dataclass(frozen=True)
class _Step:
    """One element in its JSON object: `parent[key]`, or `parent[key][index]` if it repeats."""

    parent: dict[str, Any]
    key: str
    index: int | None = None

    def value(self) -> Any:
        found = self.parent.get(self.key)
        if self.index is None:
            return found
        return found[self.index] if isinstance(found, list) and self.index < len(found) else None

    def sibling(self) -> _Step:
        """The `_key` entry holding the id and extensions of a primitive."""
        return _Step(self.parent, f"_{self.key}", self.index)

    def remove(self) -> None:
        if self.key.startswith("_"):  # an emptied `_element`: the primitive's value stays
            if self.index is None:
                self.parent.pop(self.key, None)
            else:
                self.parent[self.key][self.index] = None
                _tidy(self.parent, self.key[1:])
        elif self.index is None:
            self.parent.pop(self.key, None)
            self.parent.pop(f"_{self.key}", None)
        else:
            _remove_item(self.parent, self.key, self.index)


@dataclass(frozen=True)
class _Slot:
    """Where a selected element sits, what it is, and the elements above it."""

    step: _Step
    element: Element
    owner: ModelClass  # the type of `step.parent`
    trail: tuple[_Step, ...]  # the enclosing elements, outermost first


@dataclass(frozen=True)
class _Found:
    """An element a path selected: its value, its complex type, and its slot (None: root)."""

    value: Any
    model: ModelClass | None
    slot: _Slot | None

    def identity(self) -> tuple[int, str, int | None] | None:
        if self.slot is None:
            return None
        return id(self.slot.step.parent), self.slot.step.key, self.slot.step.index


def _select(resource: dict[str, Any], path: str) -> list[_Found]:
    """The distinct elements `path` selects, in fhirpathpy's order."""
    try:
        nodes = fhirpathpy.evaluate(
            resource,
            path,
            {"resource": resource, "rootResource": resource},
            model=_FHIRPATH_MODEL,
            options={"returnRawData": True},
        )
    except Exception as exc:  # fhirpathpy signals every evaluation error as a bare Exception
        raise _Inapplicable(f"the path cannot be evaluated: {exc}") from None
    selected: dict[Any, _Found] = {}
    for node in nodes:
        if not isinstance(node, ResourceNode):
            raise _Inapplicable(f"the path yields {node!r}, which is not an element")
        found = _place(resource, node)
        if found is not None:
            selected.setdefault(found.identity(), found)
    return list(selected.values())


def _place(resource: dict[str, Any], node: ResourceNode) -> _Found | None:
    """The element a result node stands for; None for a shadow node.

    fhirpathpy returns a primitive's `_element` as a node of its own, beside the value's node
    (and, in arrays, one for every `_element` entry, nulls included, after all the values). Such
    a node is the same element as the value's node, so it is skipped when the element has a
    value: the value's node stands for it if the path really selected it (`given[2]` of a
    two-item array must select nothing, not the shadow of `given[0]`).
    """
    if node.data is resource:
        return _Found(resource, _resource_model(resource), None)
    for segments in _candidate_segments(resource, node):
        try:
            found = _walk(resource, segments)
        except _Unplaced:
            continue
        if node.data is found.value or _same_primitive(node.data, found):
            return found
        if found.slot is not None and node.data is found.slot.step.sibling().value():
            return found if found.value is None else None
    raise _Inapplicable(
        "the path selects a value whose place in the resource cannot be determined "
        f"({node.propName or node.path}); use a plain element path"
    )


def _candidate_segments(
    resource: dict[str, Any], node: ResourceNode
) -> Iterator[list[tuple[str, int | None]]]:
    """Where fhirpathpy says it found the node, then (for objects) where it is by identity."""
    segments = _segments(node.propName, resource["resourceType"])
    if segments is not None:
        yield segments
    if isinstance(node.data, dict) and (found := _search(resource, node.data)) is not None:
        yield found


def _segments(prop_name: str | None, resource_type: str) -> list[tuple[str, int | None]] | None:
    """`Patient.contact[0].name` -> [("contact", 0), ("name", None)], if it is that simple."""
    if not prop_name:
        return None
    root, *rest = prop_name.split(".")
    matches = [_SEGMENT.fullmatch(part) for part in rest]
    if root != resource_type or not all(matches):
        return None
    return [(m[1], int(m[2]) if m[2] else None) for m in matches if m]


def _search(node: Any, target: Any) -> list[tuple[str, int | None]] | None:
    """The segments leading to `target`, found by identity."""
    if node is target:
        return []
    if not isinstance(node, dict):
        return None
    for key, value in node.items():
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            if isinstance(item, dict) and (rest := _search(item, target)) is not None:
                return [(key.lstrip("_"), index), *rest]
    return None


def _walk(resource: dict[str, Any], segments: list[tuple[str, int | None]]) -> _Found:
    """Follow segments from the root, resolving choice keys and `_element` holders."""
    found = _Found(resource, _resource_model(resource), None)
    trail: list[_Step] = []
    for name, index in segments:
        parent, owner = _container(found, trail)
        element, key = _existing_child(owner, parent, name)
        if element.is_list != (index is not None):
            raise _Unplaced(name)
        step = _Step(parent, key, index)
        value = step.value()
        found = _Found(
            value, _value_model(element, value), _Slot(step, element, owner, tuple(trail))
        )
        trail.append(step)
    return found


def _container(found: _Found, trail: list[_Step]) -> tuple[dict[str, Any], ModelClass]:
    """The object to look into for a child: the element, or a primitive's `_element` holder."""
    if isinstance(found.value, dict) and found.model is not None:
        return found.value, found.model
    if found.slot is not None and found.slot.element.primitive is not None:
        holder = found.slot.step.sibling()
        if isinstance(holder.value(), dict):
            trail.append(holder)
            return holder.value(), model_class("Element")
    raise _Unplaced("no children")


def _existing_child(owner: ModelClass, parent: dict[str, Any], name: str) -> tuple[Element, str]:
    table = elements(owner)
    if name in table:
        return table[name], name
    present = [
        key
        for key, element in table.items()
        if element.choice == name and (key in parent or f"_{key}" in parent)
    ]
    if len(present) != 1:
        raise _Unplaced(name)
    return table[present[0]], present[0]


def _same_primitive(data: Any, found: _Found) -> bool:
    """A primitive equal to the walked one (fhirpathpy may hand back an equal copy)."""
    if data is None or isinstance(data, dict | list) or found.model is not None:
        return False
    return type(data) is type(found.value) and data == found.value


def _resource_model(resource: dict[str, Any]) -> ModelClass:
    try:
        return model_class(resource["resourceType"])
    except (KeyError, ValueError):
        raise _Inapplicable(f"unknown resource type {resource.get('resourceType')!r}") from None


def _value_model(element: Element, value: Any) -> ModelClass | None:
    if element.is_resource:
        return _resource_model(value) if isinstance(value, dict) else None
    return element.model


def _single(resource: dict[str, Any], path: str) -> _Found:
    found = _select(resource, path)
    if not found:
        raise _Inapplicable("no element found at the path")
    if len(found) > 1:
        raise _Inapplicable(f"the path selects {len(found)} elements; it must select one")
    return found[0]


def _whole_list(resource: dict[str, Any], path: str) -> _Slot:
    """For insert and move: the path must select every item of one repeating element.

    The slot of the first item is returned: its element says what the list holds.
    """
    slots = [found.slot for found in _select(resource, path)]
    if not slots:
        raise _Inapplicable("no list found at the path (use add to start a list)")
    first = slots[0]
    if first is None or first.step.index is None:
        raise _Inapplicable("the path does not select a repeating element")
    steps = [slot.step for slot in slots if slot is not None]
    if len(steps) < len(slots) or any(
        step.parent is not first.step.parent or step.key != first.step.key for step in steps
    ):
        raise _Inapplicable("the path selects elements of more than one list")
    if sorted(step.index for step in steps if step.index is not None) != list(
        range(_length(first.step.parent, first.step.key))
    ):
        raise _Inapplicable("the path selects only part of a list; it must select the whole list")
    return first


# ---------------------------------------------------------------------------------------------
# Values


def _child_for(owner: ModelClass, name: str, value: _Value) -> tuple[Element, str]:
    """The element `name` of `owner` a value goes to, with the JSON key for a choice's type."""
    table = elements(owner)
    if name in table:
        return table[name], name
    variants = {key for key, element in table.items() if element.choice == name}
    if not variants:
        raise _Inapplicable(f"{owner.__name__} has no element {name!r}")
    if value.type_name is None:
        raise _Inapplicable(f"{name}[x] is a choice: give the value as value[x] to name its type")
    key = f"{name}{value.type_name}"
    if key not in variants:
        raise _Inapplicable(
            f"{name}[x] of {owner.__name__} does not allow the type {value.type_name}"
        )
    return table[key], key


def _build(value: _Value, element: Element) -> tuple[Any, Any]:
    """The JSON content, and `_element` content, that `value` gives `element`."""
    if value.parts is not None:
        if element.model is None or element.is_resource:
            raise _Inapplicable(f"{element.name} is not a complex element: parts cannot build it")
        return _build_object(value.parts, element.model), None
    if value.type_name is None:
        if not element.is_resource:
            raise _Inapplicable(f"{element.name} cannot hold a resource")
        return copy.deepcopy(value.data), None
    _check_type(value, element)
    return copy.deepcopy(value.data), copy.deepcopy(value.extension)


def _check_type(value: _Value, element: Element) -> None:
    """Primitive for primitive, the named complex type for a complex one."""
    given = f"value{value.type_name}"
    if element.is_resource:
        raise _Inapplicable(f"{element.name} holds a resource, not {given}")
    if element.primitive is not None:
        if isinstance(value.data, dict):
            raise _Inapplicable(f"{element.name} is a primitive ({element.primitive}), not {given}")
        return
    expected = element.model.__name__ if element.model else ""
    if not isinstance(value.data, dict):
        raise _Inapplicable(f"{element.name} is a {expected}, not the primitive {given}")
    if value.type_name != expected and not {value.type_name, expected} <= _QUANTITIES:
        raise _Inapplicable(f"{element.name} is a {expected}, not {given}")


def _build_object(parts: tuple[tuple[str, _Value], ...], model: ModelClass) -> dict[str, Any]:
    """An anonymous (backbone) value from its named parts, repeating elements as lists."""
    built: dict[str, Any] = {}
    for name, value in parts:
        element, key = _child_for(model, name, value)
        content, extension = _build(value, element)
        if element.is_list:
            _insert_item(built, key, _length(built, key), content, extension)
        elif key in built or f"_{key}" in built:
            raise _Inapplicable(f"{name} does not repeat but is given twice in the parts")
        else:
            _set(_Step(built, key), content, extension)
    return built


# ---------------------------------------------------------------------------------------------
# JSON edits that keep a primitive's `_element` sibling in step


def _length(parent: dict[str, Any], key: str) -> int:
    return max(len(parent.get(key) or []), len(parent.get(f"_{key}") or []))


def _set(step: _Step, content: Any, extension: Any) -> None:
    """Write an element's value and `_element` (either may be absent) at its place."""
    if step.index is None:
        for key, new in ((step.key, content), (f"_{step.key}", extension)):
            if new is None:
                step.parent.pop(key, None)
            else:
                step.parent[key] = new
        return
    _aligned(step.parent, step.key, extension is not None)
    step.parent[step.key][step.index] = content
    if f"_{step.key}" in step.parent:
        step.parent[f"_{step.key}"][step.index] = extension
    _tidy(step.parent, step.key)


def _insert_item(
    parent: dict[str, Any], key: str, index: int, content: Any, extension: Any
) -> None:
    _aligned(parent, key, extension is not None)
    parent[key].insert(index, content)
    if f"_{key}" in parent:
        parent[f"_{key}"].insert(index, extension)
    _tidy(parent, key)


def _remove_item(parent: dict[str, Any], key: str, index: int) -> None:
    _aligned(parent, key, False)
    for name in (key, f"_{key}"):
        if name in parent:
            del parent[name][index]
    _tidy(parent, key)


def _move_item(parent: dict[str, Any], key: str, source: int, destination: int) -> None:
    _aligned(parent, key, False)
    for name in (key, f"_{key}"):
        if name in parent:
            parent[name].insert(destination, parent[name].pop(source))


def _aligned(parent: dict[str, Any], key: str, with_extensions: bool) -> None:
    """Pad a repeating element's value and `_element` arrays to one length (JSON nulls)."""
    size = _length(parent, key)
    names = [key, f"_{key}"] if with_extensions or f"_{key}" in parent else [key]
    for name in names:
        items = parent.setdefault(name, [])
        items.extend([None] * (size - len(items)))


def _tidy(parent: dict[str, Any], key: str) -> None:
    """Drop a value or `_element` array left empty or all null (JSON may omit either)."""
    for name in (key, f"_{key}"):
        items = parent.get(name)
        if isinstance(items, list) and all(item is None for item in items):
            parent.pop(name)


def _prune(trail: tuple[_Step, ...]) -> None:
    """Remove the enclosing elements a deletion left empty, innermost first."""
    for step in reversed(trail):
        if not _is_empty(step):
            return
        step.remove()


def _is_empty(step: _Step) -> bool:
    """An object with no members, or a primitive with neither value nor `_element`."""
    value = step.value()
    if value is None and not step.key.startswith("_"):
        return step.sibling().value() in (None, {})
    return value == {}


# ---------------------------------------------------------------------------------------------
# The five operations


def _add(resource: dict[str, Any], operation: _Operation) -> None:
    """Add the element `name` to the one element `path` selects; append if it repeats."""
    assert operation.name is not None and operation.value is not None
    target = _single(resource, operation.expression)
    if not isinstance(target.value, dict) or target.model is None:
        raise _Inapplicable("the path selects a primitive, which has no child elements")
    element, key = _child_for(target.model, operation.name, operation.value)
    content, extension = _build(operation.value, element)
    if element.is_list:
        _insert_item(target.value, key, _length(target.value, key), content, extension)
        return
    taken = element.choice and any(
        k in target.value or f"_{k}" in target.value
        for k, e in elements(target.model).items()
        if e.choice == element.choice
    )
    if taken or key in target.value or f"_{key}" in target.value:
        raise _Inapplicable(f"{operation.name} already exists and does not repeat; use replace")
    _set(_Step(target.value, key), content, extension)


def _insert(resource: dict[str, Any], operation: _Operation) -> None:
    """Insert the value at `index` (0 to the list's length) of the list `path` selects."""
    assert operation.value is not None and operation.index is not None
    slot = _whole_list(resource, operation.expression)
    step = _Step(slot.step.parent, slot.step.key)
    size = _length(step.parent, step.key)
    if not 0 <= operation.index <= size:
        raise _Inapplicable(f"index {operation.index} is outside 0..{size}")
    content, extension = _build(operation.value, slot.element)
    _insert_item(step.parent, step.key, operation.index, content, extension)


def _delete(resource: dict[str, Any], operation: _Operation) -> None:
    """Delete the one element `path` selects; selecting nothing is not an error."""
    found = _select(resource, operation.expression)
    if len(found) > 1:
        raise _Inapplicable(f"the path selects {len(found)} elements; only one can be deleted")
    if not found:
        return
    slot = found[0].slot
    if slot is None:
        raise _Inapplicable("the resource itself cannot be deleted by a patch")
    slot.step.remove()
    _prune(slot.trail)


def _replace(resource: dict[str, Any], operation: _Operation) -> None:
    """Replace the one element `path` selects; a choice element takes the new value's type."""
    assert operation.value is not None
    slot = _single(resource, operation.expression).slot
    if slot is None:
        raise _Inapplicable("the resource itself cannot be replaced by a patch (use update)")
    element, key = slot.element, slot.step.key
    if element.choice is not None:
        element, key = _child_for(slot.owner, element.choice, operation.value)
    content, extension = _build(operation.value, element)
    if key != slot.step.key:
        slot.step.remove()
    _set(_Step(slot.step.parent, key, slot.step.index), content, extension)


def _move(resource: dict[str, Any], operation: _Operation) -> None:
    """Move an item of the list `path` selects from `source` to `destination`."""
    assert operation.source is not None and operation.destination is not None
    slot = _whole_list(resource, operation.expression)
    step = _Step(slot.step.parent, slot.step.key)
    size = _length(step.parent, step.key)
    for name, position in (("source", operation.source), ("destination", operation.destination)):
        if not 0 <= position < size:
            raise _Inapplicable(f"{name} {position} is outside 0..{size - 1}")
    _move_item(step.parent, step.key, operation.source, operation.destination)


_APPLY: dict[str, Callable[[dict[str, Any], _Operation], None]] = {
    "add": _add,
    "insert": _insert,
    "delete": _delete,
    "replace": _replace,
    "move": _move,
}
