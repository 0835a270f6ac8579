"""The FHIRPath subset of profile invariants, compiled to Python closures over the JSON resource.

fhirpathpy interprets its syntax tree at every evaluation: 70 to 200 µs for one invariant of a
Patient, as long as parsing the whole resource with fhir.resources. Invariants run on every
write, so the common ones are compiled instead: the syntax tree is fhirpathpy's own parse, each
node becomes a closure `(focus, resource) -> collection`, and a node outside the subset raises
`Unsupported` at compile time so that the caller keeps fhirpathpy for that expression. Nothing
is guessed: an evaluation that reaches a primitive's extensions (`_birthDate`) raises
`PrimitiveExtensions` for the caller to hand it to fhirpathpy, and
`tests/validation/test_fhirpath.py` checks that both give the same results.

The subset: paths (a leading type name, choice elements of the R4 model such as `value`),
`$this`, `%resource` and `%rootResource`, string, integer and boolean literals and `{}`; the
operators `=` `!=` `in` `contains` `|` `+` `and` `or` `xor` `implies`; the functions `exists`,
`empty`, `not`, `where`, `all`, `count`, `first`, `extension`, `matches`, `contains` (on a
string). Values are compared as JSON values: dates are compared as text, which is why `<` and
`>` stay with fhirpathpy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhirpathpy.models import models
from fhirpathpy.parser import parse

Collection = list[Any]
Compiled = Callable[[Collection, dict[str, Any]], Collection]


class Unsupported(ValueError):
    """The expression uses FHIRPath beyond the compiled subset."""


class FhirPathError(ValueError):
    """The expression cannot be evaluated on this input (e.g. a string function on a list)."""


class PrimitiveExtensions(Exception):
    """The path reaches a primitive that has extensions (`_birthDate`): FHIRPath sees them, the
    JSON value alone does not, so this evaluation must be left to fhirpathpy."""


def compile_fast(expression: str) -> Compiled:
    """Compile `expression`; raises Unsupported when it leaves the subset."""
    return _compile(parse(expression)["children"][0])


def _compile(node: dict[str, Any]) -> Compiled:
    kind = node["type"]
    if kind in ("TermExpression", "InvocationTerm", "ParenthesizedTerm"):
        return _compile(node["children"][0])
    compiler = _NODES.get(kind)
    if compiler is None:
        raise Unsupported(kind)
    compiled = compiler(node)
    if _constant(node):  # e.g. ('a' | 'b'): computed once
        value = compiled([], {})
        return lambda focus, resource: value
    return compiled


def _constant(node: dict[str, Any]) -> bool:
    """Whether the node depends on neither the focus nor the resource."""
    kind = node["type"]
    if kind == "LiteralTerm":
        return True
    if kind in ("TermExpression", "ParenthesizedTerm", "UnionExpression", "AdditiveExpression"):
        return all(_constant(child) for child in node["children"])
    return False


def _constant_value(node: dict[str, Any]) -> Collection | None:
    """The value of a constant node, None when it is not constant."""
    return _compile(node)([], {}) if _constant(node) else None


def _operator(node: dict[str, Any]) -> str:
    return node["terminalNodeText"][0]


def _identifier(node: dict[str, Any]) -> str:
    name = node["children"][0]["text"]
    if name.startswith("`"):
        raise Unsupported(f"delimited identifier {name}")
    return name


# ------------------------------------------------------------------------------------ paths


def _choice_keys() -> dict[str, tuple[str, ...]]:
    """Choice element name → the JSON properties of its types (`value` → `valueCoding`, ...),
    from the R4 model of fhirpathpy."""
    keys: dict[str, list[str]] = {}
    for path, types in models["r4"]["choiceTypePaths"].items():
        name = path.rsplit(".", 1)[1]
        keys.setdefault(name, []).extend(name + t[0].upper() + t[1:] for t in types)
    return {name: tuple(dict.fromkeys(found)) for name, found in keys.items()}


_CHOICE_KEYS = _choice_keys()


def _absent(item: dict[str, Any], name: str) -> Any:
    """What `name` finds when the item has no such property: the item itself when `name` is its
    resource type (`Patient.identifier`), or the value of a choice element (`value` finds
    `valueCoding`)."""
    if name[:1].isupper() and item.get("resourceType") == name:
        return item
    for key in _CHOICE_KEYS.get(name, ()):
        if (value := item.get(key)) is not None:
            return value
    return None


def _member(node: dict[str, Any]) -> Compiled:
    name = _identifier(node)
    shadow = f"_{name}"

    def member(focus: Collection, resource: dict[str, Any]) -> Collection:
        found: Collection = []
        for item in focus:
            if isinstance(item, dict):
                if shadow in item:
                    raise PrimitiveExtensions(shadow)
                value = item.get(name)
                if value is None:
                    value = _absent(item, name)
                if isinstance(value, list):
                    found.extend(v for v in value if v is not None)
                elif value is not None:
                    found.append(value)
        return found

    return member


def _invocation(node: dict[str, Any]) -> Compiled:
    source, step = _compile(node["children"][0]), _compile(node["children"][1])
    return lambda focus, resource: step(source(focus, resource), resource)


def _this(node: dict[str, Any]) -> Compiled:
    return lambda focus, resource: focus


def _external(node: dict[str, Any]) -> Compiled:
    name = _identifier(node["children"][0])
    if name not in ("resource", "rootResource"):
        raise Unsupported(f"%{name}")
    return lambda focus, resource: [resource]


# --------------------------------------------------------------------------------- literals

_ESCAPES = {"'": "'", "`": "`", '"': '"', "r": "\r", "n": "\n", "t": "\t", "f": "\f", "\\": "\\"}


def _unescape(text: str) -> str:
    def escape(match: re.Match[str]) -> str:
        code = match.group(1)
        return chr(int(code[1:], 16)) if code[0] == "u" else _ESCAPES.get(code, match.group(0))

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", escape, text[1:-1])


def _literal(node: dict[str, Any]) -> Compiled:
    literal = node["children"][0]
    kind, text = literal["type"], literal.get("text", "")
    if kind == "StringLiteral":
        value: Collection = [_unescape(text)]
    elif kind == "BooleanLiteral":
        value = [text == "true"]
    elif kind == "NumberLiteral" and text.isdigit():
        value = [int(text)]
    elif kind == "NullLiteral":
        value = []
    else:
        raise Unsupported(f"{kind} {text}")
    return lambda focus, resource: value


# -------------------------------------------------------------------------------- operators


def _boolean(collection: Collection) -> bool | None:
    """Singleton evaluation of a collection as a Boolean: empty is unknown (None)."""
    if not collection:
        return None
    if len(collection) > 1:
        raise FhirPathError(f"expected a single Boolean, got {len(collection)} items")
    value = collection[0]
    return value if isinstance(value, bool) else True


def _logic(node: dict[str, Any]) -> Compiled:
    """and, or, xor, implies with FHIRPath's three-valued logic (empty is unknown). Both operands
    are evaluated, as fhirpathpy does: an operand that cannot be evaluated is an error even when
    the other one decides."""
    left, right = (_compile(child) for child in node["children"])
    combine = _LOGIC[_operator(node)]

    def logic(focus: Collection, resource: dict[str, Any]) -> Collection:
        result = combine(_boolean(left(focus, resource)), _boolean(right(focus, resource)))
        return [] if result is None else [result]

    return logic


def _and(a: bool | None, b: bool | None) -> bool | None:
    return False if a is False or b is False else (True if a and b else None)


def _or(a: bool | None, b: bool | None) -> bool | None:
    return True if a or b else (False if a is False and b is False else None)


def _xor(a: bool | None, b: bool | None) -> bool | None:
    return None if a is None or b is None else a != b


def _implies(a: bool | None, b: bool | None) -> bool | None:
    return True if a is False or b is True else (False if a is True and b is False else None)


_LOGIC = {"and": _and, "or": _or, "xor": _xor, "implies": _implies}


def _same(a: Any, b: Any) -> bool:
    return a == b and (type(a) is type(b) or (_number(a) and _number(b)))


def _number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _equality(node: dict[str, Any]) -> Compiled:
    operator = _operator(node)
    if operator not in ("=", "!="):
        raise Unsupported(operator)
    left_node, right_node = node["children"]
    left, right = _compile(left_node), _compile(right_node)
    negate = operator == "!="
    constant = _constant_value(right_node)
    if constant is not None and len(constant) == 1 and isinstance(constant[0], str):
        text = constant[0]

        def equals_text(focus: Collection, resource: dict[str, Any]) -> Collection:
            a = left(focus, resource)
            if not a:
                return []
            return [(len(a) == 1 and a[0] == text and isinstance(a[0], str)) != negate]

        return equals_text

    def equality(focus: Collection, resource: dict[str, Any]) -> Collection:
        a, b = left(focus, resource), right(focus, resource)
        if not a or not b:
            return []
        if len(a) == 1 and len(b) == 1:
            return [_same(a[0], b[0]) != negate]
        equal = len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
        return [equal != negate]

    return equality


def _membership(node: dict[str, Any]) -> Compiled:
    item_node, collection_node = node["children"]
    if _operator(node) == "contains":
        item_node, collection_node = collection_node, item_node
    left, right = _compile(item_node), _compile(collection_node)
    constant = _constant_value(collection_node)
    strings = (
        frozenset(constant) if constant and all(isinstance(v, str) for v in constant) else None
    )

    def membership(focus: Collection, resource: dict[str, Any]) -> Collection:
        item = left(focus, resource)
        if not item:
            return []
        if len(item) > 1:
            raise FhirPathError("membership of more than one item")
        if strings is not None:
            return [isinstance(item[0], str) and item[0] in strings]
        return [any(_same(item[0], other) for other in right(focus, resource))]

    return membership


def _union(node: dict[str, Any]) -> Compiled:
    left, right = (_compile(child) for child in node["children"])

    def union(focus: Collection, resource: dict[str, Any]) -> Collection:
        result: Collection = []
        for value in (*left(focus, resource), *right(focus, resource)):
            if not any(_same(value, seen) for seen in result):
                result.append(value)
        return result

    return union


def _addition(node: dict[str, Any]) -> Compiled:
    if _operator(node) != "+":
        raise Unsupported(_operator(node))
    left, right = (_compile(child) for child in node["children"])

    def addition(focus: Collection, resource: dict[str, Any]) -> Collection:
        a, b = left(focus, resource), right(focus, resource)
        if not a or not b:
            return []
        if len(a) > 1 or len(b) > 1:
            raise FhirPathError("+ on more than one item")
        x, y = a[0], b[0]
        if (isinstance(x, str) and isinstance(y, str)) or (_number(x) and _number(y)):
            return [x + y]
        raise FhirPathError(f"cannot add {x!r} and {y!r}")

    return addition


# -------------------------------------------------------------------------------- functions


def _string(focus: Collection, function: str) -> str:
    if len(focus) != 1 or not isinstance(focus[0], str):
        raise FhirPathError(f"{function}() expects a single string")
    return focus[0]


def _argument(params: list[Compiled], function: str) -> str:
    """The constant string argument of matches(), contains() or extension()."""
    if len(params) != 1:
        raise Unsupported(f"{function}() takes one argument")
    value = params[0]([], {})
    if len(value) != 1 or not isinstance(value[0], str):
        raise Unsupported(f"{function}() needs a string literal")
    return value[0]


def _where(criteria: Compiled, focus: Collection, resource: dict[str, Any]) -> Collection:
    return [item for item in focus if _boolean(criteria([item], resource)) is True]


def _function(node: dict[str, Any]) -> Compiled:
    call = node["children"][0]
    name = call["children"][0]["text"]
    arguments = call["children"][1]["children"] if len(call["children"]) > 1 else []
    params = [_compile(argument) for argument in arguments]
    arity = len(params)
    if name == "exists" and arity == 0:
        return lambda focus, resource: [bool(focus)]
    if name == "exists" and arity == 1:
        (criteria,) = params
        return lambda focus, resource: [bool(_where(criteria, focus, resource))]
    if name == "where" and arity == 1:
        (criteria,) = params
        return lambda focus, resource: _where(criteria, focus, resource)
    if name == "all" and arity == 1:
        (criteria,) = params
        return lambda focus, resource: [
            all(_boolean(criteria([item], resource)) is True for item in focus)
        ]
    if name == "empty" and arity == 0:
        return lambda focus, resource: [not focus]
    if name == "count" and arity == 0:
        return lambda focus, resource: [len(focus)]
    if name == "first" and arity == 0:
        return lambda focus, resource: focus[:1]
    if name == "not" and arity == 0:
        return _not
    if name == "extension":
        url = _argument(params, name)
        return lambda focus, resource: [
            e
            for item in focus
            if isinstance(item, dict)
            for e in item.get("extension", ())
            if e.get("url") == url
        ]
    if name == "matches":
        pattern = re.compile(_argument(params, name), re.DOTALL)
        return lambda focus, resource: (
            [pattern.search(_string(focus, name)) is not None] if focus else []
        )
    if name == "contains":
        part = _argument(params, name)
        return lambda focus, resource: [part in _string(focus, name)] if focus else []
    raise Unsupported(f"{name}() with {arity} arguments")


def _not(focus: Collection, resource: dict[str, Any]) -> Collection:
    value = _boolean(focus)
    return [] if value is None else [not value]


_NODES: dict[str, Callable[[dict[str, Any]], Compiled]] = {
    "InvocationExpression": _invocation,
    "MemberInvocation": _member,
    "FunctionInvocation": _function,
    "ThisInvocation": _this,
    "ExternalConstantTerm": _external,
    "LiteralTerm": _literal,
    "AndExpression": _logic,
    "OrExpression": _logic,
    "ImpliesExpression": _logic,
    "EqualityExpression": _equality,
    "MembershipExpression": _membership,
    "UnionExpression": _union,
    "AdditiveExpression": _addition,
}
