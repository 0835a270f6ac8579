"""Parsing search URLs (search.html) into criteria: `name[:modifier][.chain]=v1,v2`, `_has`,
and the result parameters (`_sort`, `_count`, `_include`, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from fhir_server.search.parameters import Registry, SearchParameter

RESULT_PARAMS = frozenset(
    {
        "_sort",
        "_count",
        "_total",
        "_summary",
        "_elements",
        "_include",
        "_revinclude",
        "_page",
        "_type",
    }
)
UNSUPPORTED_RESULT_PARAMS = frozenset(
    {"_contained", "_containedType", "_text", "_content", "_query", "_filter", "_list", "_score"}
)
MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "text", "of-type", "missing"},
    "reference": {"identifier", "missing"},  # plus :[type]
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"below", "above", "missing"},
    "composite": {"missing"},
}


class ParamError(ValueError):
    """A search parameter the server cannot honour (unknown, malformed, unsupported)."""


@dataclass
class Criterion:
    """One `name[:modifier]=v1,v2` of a search: its values are ORed, criteria are ANDed.

    A chained criterion (`subject:Patient.name=x`) holds the reference parameter here and the
    criterion on the target in `chain`; a reverse chain (`_has`) holds it in `has`."""

    param: SearchParameter
    modifier: str | None
    values: list[str]
    chain: Criterion | None = None
    chain_types: tuple[str, ...] = ()
    has: Has | None = None


@dataclass
class Has:
    """`_has:Observation:patient:code=x`: resources referenced by a matching Observation."""

    type: str
    reference: SearchParameter
    criterion: Criterion | None  # None when the inner one is itself a _has
    inner: Has | None = None


@dataclass(frozen=True)
class Include:
    source_type: str | None  # None for a bare `*`: every type
    param: str | None  # None for `*`
    target_type: str | None
    iterate: bool


@dataclass
class SortKey:
    code: str  # "_id", "_lastUpdated" or a parameter code
    param: SearchParameter | None
    descending: bool


@dataclass
class SearchRequest:
    types: list[str]
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int | None = None
    total: Literal["none", "estimate", "accurate"] | None = None
    summary: str | None = None
    elements: list[str] | None = None
    include: list[Include] = field(default_factory=list)
    revinclude: list[Include] = field(default_factory=list)
    page: str | None = None
    compartment: list[Criterion] = field(default_factory=list)  # ORed
    clauses: list[Any] = field(default_factory=list)  # the SQL of each criterion (sql.Clause)
    used: list[tuple[str, str]] = field(default_factory=list)  # for the self link
    problems: list[str] = field(default_factory=list)  # ignored parameters, lenient mode


def split_values(raw: str) -> list[str]:
    """Split at unescaped commas; `\\,` stays a comma inside a value."""
    values, current, escaped = [], [], False
    for char in raw:
        if escaped:
            current.append(char if char == "," else "\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            values.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    values.append("".join(current))
    return values


def escape(value: str) -> str:
    """A value as written in a token search (`\\`, `|`, `,` and `$` escaped)."""
    for char in ("\\", "|", ",", "$"):
        value = value.replace(char, "\\" + char)
    return value


def unescape(value: str) -> str:
    return value.replace("\\|", "|").replace("\\$", "$").replace("\\\\", "\\")


def split_unescaped(value: str, separator: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in value:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


class Parser:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def param(self, types: list[str], code: str) -> SearchParameter:
        """The definition of `code` for every type searched: all must agree on its type."""
        found = [self.registry.get(t, code) for t in types]
        if not found or any(p is None for p in found):
            where = types[0] if len(types) == 1 else ", ".join(types) or "all resources"
            raise ParamError(f"Unknown search parameter {code!r} for {where}")
        if len({p.type for p in found}) > 1:
            raise ParamError(f"Search parameter {code!r} has different types across {types}")
        return found[0]

    def criterion(self, types: list[str], name: str, raw: str) -> Criterion:
        if name.startswith("_has:"):
            has = self.has(types, name[5:], raw)
            return Criterion(param=has.reference, modifier=None, values=[], has=has)
        head, dot, rest = name.partition(".")
        code, _, modifier = head.partition(":")
        param = self.param(types, code)
        modifier = modifier or None
        if dot:
            if param.type != "reference":
                raise ParamError(f"Chaining needs a reference parameter, {code!r} is not one")
            targets = self._targets(param, modifier)
            chained = [
                t for t in targets if self.registry.get(t, rest.partition(":")[0].partition(".")[0])
            ]
            if not chained:
                raise ParamError(f"No target of {code!r} has a parameter {rest!r}")
            inner = self.criterion(chained, rest, raw)
            return Criterion(param, None, [], chain=inner, chain_types=tuple(chained))
        self._check_modifier(param, modifier)
        if modifier == "missing":
            if raw not in ("true", "false"):
                raise ParamError(f":missing takes true or false, not {raw!r}")
            return Criterion(param, modifier, [raw])
        return Criterion(param, modifier, split_values(raw))

    def has(self, types: list[str], spec: str, raw: str) -> Has:
        type_, _, rest = spec.partition(":")
        ref_code, _, inner = rest.partition(":")
        if not type_ or not ref_code or not inner:
            raise ParamError(f"Malformed _has:{spec}")
        reference = self.registry.get(type_, ref_code)
        if reference is None or reference.type != "reference":
            raise ParamError(f"{type_} has no reference parameter {ref_code!r}")
        if reference.target and not set(types) & set(reference.target):
            raise ParamError(f"{type_}:{ref_code} does not point to {', '.join(types)}")
        if inner.startswith("_has:"):
            return Has(type_, reference, None, self.has([type_], inner[5:], raw))
        return Has(type_, reference, self.criterion([type_], inner, raw))

    def _targets(self, param: SearchParameter, modifier: str | None) -> list[str]:
        if modifier:
            if param.target and modifier not in param.target:
                raise ParamError(f"{param.code!r} cannot point to {modifier}")
            return [modifier]
        return list(param.target)

    def _check_modifier(self, param: SearchParameter, modifier: str | None) -> None:
        if modifier is None:
            return
        if param.type == "reference" and (
            modifier in param.target or (not param.target and modifier[:1].isupper())
        ):
            return
        if (param.code == "_id" and modifier != "missing") or modifier not in MODIFIERS.get(
            param.type, ()
        ):
            raise ParamError(
                f"Modifier :{modifier} is not supported on {param.code!r} ({param.type})"
            )

    def include(self, value: str, iterate: bool, reverse: bool) -> Include:
        if value == "*":  # every reference of every source type, as HAPI FHIR reads it
            return Include(None, None, None, iterate)
        parts = value.split(":")
        if len(parts) not in (2, 3):
            raise ParamError(f"Malformed _{'rev' if reverse else ''}include {value!r}")
        source = parts[0]
        if parts[1] == "*":
            return Include(source, None, parts[2] if len(parts) == 3 else None, iterate)
        param = self.registry.get(source, parts[1])
        if param is None or param.type != "reference":
            raise ParamError(f"{source} has no reference parameter {parts[1]!r}")
        target = parts[2] if len(parts) == 3 else None
        return Include(source, param.code, target, iterate)

    def sort(self, types: list[str], value: str) -> list[SortKey]:
        keys = []
        for item in value.split(","):
            descending = item.startswith("-")
            code = item.lstrip("-")
            if code in ("_id", "_lastUpdated"):
                keys.append(SortKey(code, None, descending))
                continue
            param = self.param(types, code)
            if param.type == "composite":
                raise ParamError(f"Cannot sort by the composite parameter {code!r}")
            keys.append(SortKey(code, param, descending))
        return keys
