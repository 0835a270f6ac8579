"""Criteria → SQL (SQLAlchemy Core), one subquery per criterion on the index tables:
`resource.pk IN (SELECT resource_pk FROM search_token WHERE type = ... AND param = ... AND ...)`.
The same statements run on SQLite and PostgreSQL; every comparison is index-friendly (string
prefixes are ranges, never LIKE on a leading wildcard except for :contains)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from itertools import count
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.types import NullType

from fhir_server.engine.interaction import Visible
from fhir_server.search.criteria import Criterion, Has, ParamError, split_unescaped, unescape
from fhir_server.search.extract import SHARED_ROWS, composite_components
from fhir_server.search.normalize import (
    MAX_DATE,
    MAX_STRING,
    MIN_DATE,
    date_range,
    normalize_string,
    number_range,
)
from fhir_server.search.parameters import Registry, SearchParameter
from fhir_server.storage.schema import (
    AUDIT_TRAIL,
    AuditReferenceIndex,
    DateIndex,
    NumberIndex,
    QuantityIndex,
    ReferenceIndex,
    ResourceRow,
    StringIndex,
    TokenIndex,
    UriIndex,
    VersionRow,
    reference_index,
)

RESOURCE = ResourceRow.__table__
VERSION = VersionRow.__table__
TABLES = {
    "string": StringIndex.__table__,
    "token": TokenIndex.__table__,
    "reference": ReferenceIndex.__table__,
    "date": DateIndex.__table__,
    "number": NumberIndex.__table__,
    "quantity": QuantityIndex.__table__,
    "uri": UriIndex.__table__,
}


REFERENCE_TABLES = (ReferenceIndex.__table__, AuditReferenceIndex.__table__)


def index_table(kind: str, types: list[str]) -> Table:
    """The index table of `kind` holding the rows of resources of `types`: the references of
    the audit trail are in a table of their own (`AuditReferenceIndex`); `types` are all of the
    trail or all outside it (`_split`)."""
    if kind == "reference":
        return reference_index(types[0]).__table__
    return TABLES[kind]


def param_rows(table: FromClause, types: list[str], code: str) -> Condition:
    """The index rows of parameter `code` in `table` (rows of `types`), with those it shares
    with another parameter (`SHARED_ROWS`: an AuditEvent's Patient entities are its
    `patient`s)."""
    return _param_rows(table, types[0] if len(types) == 1 else None, code)


@lru_cache(maxsize=4096)
def _param_rows(table: FromClause, type_: str | None, code: str) -> Condition:
    """Built once per table and parameter: SQLAlchemy expressions are immutable, and building
    them was a third of parsing a search."""
    own = table.c.param == code
    shared = SHARED_ROWS.get((type_, code)) if type_ is not None else None
    if shared is None:
        return own
    other, target_type = shared
    return or_(own, and_(table.c.param == other, table.c.target_type == target_type))


@lru_cache(maxsize=4096)
def _type_rows(table: FromClause, types: tuple[str, ...]) -> Condition:
    return table.c.type == types[0] if len(types) == 1 else table.c.type.in_(types)


def _split(types: list[str]) -> list[list[str]]:
    """`types` in groups whose references are in one table: the audit trail, the others."""
    if AUDIT_TRAIL not in types or len(types) == 1:
        return [types]
    return [[AUDIT_TRAIL], [t for t in types if t != AUDIT_TRAIL]]


PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_ONE_MS = timedelta(milliseconds=1)

Condition = ColumnElement[bool]


def split_prefix(value: str) -> tuple[str, str]:
    if value[:2] in PREFIXES and len(value) > 2:
        return value[:2], value[2:]
    return "eq", value


def _next_prefix(text: str) -> str:
    """The smallest string greater than every string starting with `text`."""
    return text[:-1] + chr(ord(text[-1]) + 1) if text else "\U0010ffff"


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def range_condition(
    prefix: str,
    low: Any,
    high: Any,
    search_low: Any,
    search_high: Any,
    approx: tuple[Any, Any] | None = None,
) -> Condition:
    """Prefix semantics of search.html#prefix for a stored range [low, high) against the search
    range [search_low, search_high)."""
    contained = and_(low >= search_low, high <= search_high)
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return not_(contained)
    if prefix == "gt":
        return high > search_high
    if prefix == "lt":
        return low < search_low
    if prefix == "ge":
        return or_(high > search_high, contained)
    if prefix == "le":
        return or_(low < search_low, contained)
    if prefix == "sa":
        return low >= search_high
    if prefix == "eb":
        return high <= search_low
    approx_low, approx_high = approx or (search_low, search_high)
    return and_(low < approx_high, high > approx_low)  # ap: overlaps the widened range


# A search value parsed: its shape (which SQL it takes) and the values that SQL compares with.
Parsed = tuple[str, tuple[Any, ...]]


def _numeric(prefix: str, text: str) -> Parsed:
    try:
        exact = Decimal(text)
        low, high = number_range(text)
    except (InvalidOperation, ValueError):
        raise ParamError(f"Malformed number {text!r}") from None
    if prefix in ("eq", "ne"):
        return prefix, (low, high)
    if prefix == "ap":
        margin = abs(exact) / 10
        return prefix, (exact - margin, exact + margin)
    return prefix, (exact,)


_COMPARISONS: dict[str, Callable[[Any, Any], Condition]] = {
    "gt": operator.gt,
    "sa": operator.gt,
    "lt": operator.lt,
    "eb": operator.lt,
    "ge": operator.ge,
    "le": operator.le,
}


def _numeric_condition(column: Any, prefix: str, values: tuple[Any, ...]) -> Condition:
    if prefix == "eq":
        return and_(column >= values[0], column < values[1])
    if prefix == "ne":
        return or_(column < values[0], column >= values[1])
    if prefix == "ap":
        return and_(column >= values[0], column <= values[1])
    return _COMPARISONS[prefix](column, values[0])


def _quantity_condition(t: FromClause, shape: str, values: tuple[Any, ...]) -> Condition:
    prefix, *terms = shape.split("|")
    numbers = 2 if prefix in ("eq", "ne", "ap") else 1
    conditions = [_numeric_condition(t.c.value, prefix, values[:numbers])]
    conditions += [t.c[term] == value for term, value in zip(terms, values[numbers:], strict=True)]
    return and_(*conditions)


def _last_updated(point: Any, prefix: str, values: tuple[Any, ...]) -> Condition:
    """A point p is the range [p, p + 1 ms): the range semantics simplify to these."""
    low, high = values[:2]
    if prefix == "eq":
        return and_(point >= low, point < high)
    if prefix == "ne":
        return not_(and_(point >= low, point < high))
    if prefix in ("gt", "sa"):
        return point >= high
    if prefix in ("lt", "eb"):
        return point < low
    if prefix == "ge":
        return point >= low
    if prefix == "le":
        return point < high
    return and_(point >= values[2], point < values[3])  # ap: the widened range


_CONDITIONS: dict[tuple[str, str], Callable[..., Condition]] = {
    # Through the normalized value's index: the exact text has none (storage/schema.py).
    ("string", "exact"): lambda t, normalized, v: and_(
        t.c.value_normalized == normalized, t.c.value_exact == v
    ),
    # Texts cut at the column's length: the stored normalization may differ from the cut one's.
    ("string", "exact-cut"): lambda t, v: t.c.value_exact == v,
    ("string", "contains"): lambda t, v: t.c.value_normalized.like(v, escape="\\"),
    ("string", "prefix"): lambda t, low, high: and_(
        t.c.value_normalized >= low, t.c.value_normalized < high
    ),
    ("token", "text"): lambda t, low, high: and_(
        t.c.text_normalized >= low, t.c.text_normalized < high
    ),
    ("token", "of-type"): lambda t, system, type_code, code: and_(
        t.c.type_system == system, t.c.type_code == type_code, t.c.code == code
    ),
    ("token", "code"): lambda t, code: t.c.code == code,
    ("token", "no-system"): lambda t, code: and_(t.c.system.is_(None), t.c.code == code),
    ("token", "system"): lambda t, system: t.c.system == system,
    ("token", "system-code"): lambda t, system, code: and_(t.c.system == system, t.c.code == code),
    ("reference", "identifier-value"): lambda t, v: t.c.identifier_value == v,
    ("reference", "identifier-system"): lambda t, system: t.c.identifier_system == system,
    ("reference", "identifier-no-system"): lambda t, v: and_(
        t.c.identifier_system.is_(None), t.c.identifier_value == v
    ),
    ("reference", "identifier"): lambda t, system, v: and_(
        t.c.identifier_system == system, t.c.identifier_value == v
    ),
    ("reference", "url"): lambda t, url: t.c.url == url,
    ("reference", "typed"): lambda t, type_, id_: and_(
        t.c.target_type == type_, t.c.target_id == id_
    ),
    ("reference", "id"): lambda t, id_: t.c.target_id == id_,
    ("uri", "below"): lambda t, low, high: and_(t.c.value >= low, t.c.value < high),
    ("uri", "eq"): lambda t, v: t.c.value == v,
}


def _value_condition(kind: str, t: FromClause, shape: str, values: tuple[Any, ...]) -> Condition:
    """The condition on index rows `t` of a parameter of type `kind` for one parsed value."""
    if kind == "date":
        approx = (values[2], values[3]) if shape == "ap" else None
        return range_condition(shape, t.c.low, t.c.high, values[0], values[1], approx)
    if kind == "number":
        return _numeric_condition(t.c.value, shape, values)
    if kind == "quantity":
        return _quantity_condition(t, shape, values)
    if kind == "uri" and shape == "above":
        return t.c.value.in_(values)
    return _CONDITIONS[kind, shape](t, *values)


def _names(name: str) -> Iterator[str]:
    """The names of a prepared criterion's values, in order: `name_0`, `name_1`, ..."""
    return (f"{name}_{k}" for k in count())


def _as_binds(parsed: list[Parsed], name: str | None) -> list[Parsed]:
    """`parsed` with its values as bind parameters named by `_names` (or as they are, without
    a name). Untyped, each takes the type of the column it meets."""
    if name is None:
        return parsed
    names = _names(name)
    return [
        (shape, tuple(bindparam(next(names), v, type_=NullType()) for v in values))
        for shape, values in parsed
    ]


@dataclass(frozen=True)
class Prepared:
    """A criterion whose SQL depends on its `key` only, not on its values: the values are bound
    by name when the statement runs, so that a statement built for one search serves every
    search of the same shape."""

    criterion: Criterion
    parsed: list[Parsed]
    key: Hashable

    def binds(self, name: str) -> dict[str, Any]:
        names = _names(name)
        return {next(names): v for _, values in self.parsed for v in values}


@dataclass(frozen=True)
class Clause:
    """One criterion in SQL: either the index rows a matching resource has (`rows`, selecting
    `resource_pk` from `table`), or a plain `condition` on the resource row. Rows can drive the
    query (`resource.pk IN (rows)`) or be checked per candidate (`EXISTS`, correlated on
    `resource_pk`): the most selective criterion drives, so that neither SQLite nor PostgreSQL
    walks every resource of a type, nor materialises every open Task to test a status."""

    rows: Select | None = None
    table: FromClause | None = None
    condition: Condition | None = None
    rank: int = 9  # usual selectivity: the lowest rank drives
    # The rows of one candidate, for the EXISTS: without the type, which the candidate has,
    # so that no (type, param, value) index can serve it and the planner takes the index on
    # resource_pk, a few rows per candidate. With the type, SQLite (given sampled statistics,
    # or none) preferred (type, param, code) and walked every open Task for each candidate.
    # Built when asked: the criterion that drives needs none.
    check: Callable[[], Select] | None = None

    def on(self, r: FromClause, drive: bool) -> Condition:
        if self.condition is not None:
            return self.condition
        if drive:
            return r.c.pk.in_(self.rows)
        rows = self.check() if self.check is not None else self.rows
        return exists(rows.where(self.table.c.resource_pk == r.c.pk))


def _rank(criterion: Criterion) -> int:
    """How selective a criterion usually is, from its parameter (no statistics needed): a
    reference or an identifier picks a few resources, a status or a date range many."""
    param, modifier = criterion.param, criterion.modifier
    if param.type == "reference":
        return 1
    if param.type == "token" and (
        param.code == "identifier"
        or modifier == "of-type"
        or all("|" in v and not v.endswith("|") and not v.startswith("|") for v in criterion.values)
    ):
        return 2
    if param.type in ("string", "uri") and modifier != "contains":
        return 3
    if param.type == "token":
        return 5
    return 6


class SqlBuilder:
    """Builds the SQL of criteria. With `visible` (what the caller may see), the resources a
    chain or a `_has` looks at must be visible too: otherwise `Task?patient.name=x` or
    `Practitioner?_has:Task:...` would tell what is in resources the caller may not read."""

    def __init__(
        self,
        registry: Registry,
        local_zone: tzinfo,
        base_url: str,
        visible: Visible | None = None,
    ) -> None:
        self.registry = registry
        self.local_zone = local_zone
        self.base_url = base_url
        self.visible = visible

    def _visible(self, r: FromClause, types: list[str]) -> list[Condition]:
        condition = self.visible(r, types) if self.visible else None
        return [] if condition is None else [condition]

    # -- criteria ----------------------------------------------------------------------------

    def prepare(self, criterion: Criterion, types: list[str]) -> Prepared | None:
        """The criterion parsed (a malformed value raises `ParamError`), when its SQL depends on
        the shape of its values only; None for chains, `_has`, composites and `:missing`."""
        param = criterion.param
        if (
            criterion.has is not None
            or criterion.chain is not None
            or criterion.modifier == "missing"
            or param.type == "composite"
            or (param.type == "reference" and len(_split(types)) > 1)
        ):
            return None
        parsed = self._parse(criterion)
        shapes = tuple((shape, len(values)) for shape, values in parsed)
        key = (param.code, param.type, criterion.modifier, shapes, _rank(criterion))
        return Prepared(criterion, parsed, key)

    def _parse(self, criterion: Criterion) -> list[Parsed]:
        param = criterion.param
        if param.code == "_id":
            return [("id", (v,)) for v in criterion.values]
        kind = "date" if param.code == "_lastUpdated" else param.type
        modifier = None if criterion.modifier == "not" else criterion.modifier
        parse = getattr(self, f"_{kind}")
        return [parse(v, modifier) for v in criterion.values]

    def condition(self, criterion: Criterion, types: list[str], r: FromClause) -> Condition:
        """The condition on resource rows `r` (of `types`) for one criterion."""
        return self.clause(criterion, types, r).on(r, drive=True)

    def clause(
        self,
        criterion: Criterion,
        types: list[str],
        r: FromClause,
        prepared: Prepared | None = None,
        name: str | None = None,
    ) -> Clause:
        """The SQL of a criterion; of a `prepared` one, with its values bound as `name_0`,
        `name_1`, ... (`Prepared.binds`) when `name` is given."""
        if criterion.has is not None:
            return Clause(condition=self._has(criterion.has, types, r))
        param = criterion.param
        parts = _split(types)
        if len(parts) > 1 and (param.type in ("reference", "composite") or criterion.chain):
            # References of the audit trail and of the other types are in two tables.
            return Clause(condition=or_(*[self.condition(criterion, p, r) for p in parts]))
        if criterion.chain is not None:
            return self._chain(criterion, types)
        if criterion.modifier == "missing":
            return Clause(condition=self._missing(param, types, r, criterion.values[0] == "true"))
        if param.type == "composite":
            if len(criterion.values) == 1:
                return self._composite(param, types, criterion.values[0])
            return Clause(
                condition=or_(
                    *[self._composite(param, types, v).on(r, drive=True) for v in criterion.values]
                )
            )
        parsed = _as_binds(prepared.parsed if prepared else self._parse(criterion), name)
        if param.code == "_id":
            return Clause(condition=r.c.id.in_([values[0] for _, values in parsed]), rank=0)
        if param.code == "_lastUpdated":
            point = r.c.last_updated
            return Clause(condition=or_(*[_last_updated(point, *p) for p in parsed]))
        table = index_table(param.type, types)
        match = or_(*[_value_condition(param.type, table, *p) for p in parsed])
        if criterion.modifier == "not":  # resources with no matching token at all
            return Clause(condition=r.c.pk.not_in(self._rows(table, types, param.code, match)))
        return Clause(
            self._rows(table, types, param.code, match),
            table,
            rank=_rank(criterion),
            check=lambda: select(table.c.resource_pk).where(
                param_rows(table, types, param.code), match
            ),
        )

    @staticmethod
    def _rows(table: FromClause, types: list[str], code: str, match: Condition) -> Any:
        return select(table.c.resource_pk).where(
            _type_rows(table, tuple(types)), param_rows(table, types, code), match
        )

    def _missing(
        self, param: SearchParameter, types: list[str], r: FromClause, missing: bool
    ) -> Condition:
        if param.type == "composite":
            code, component_type, _ = self._components(param)[0]
            table = index_table(component_type, types).alias()
        else:
            table, code = index_table(param.type, types).alias(), param.code
        rows = self._rows(table, types, code, true())
        return r.c.pk.not_in(rows) if missing else r.c.pk.in_(rows)

    def _chain(self, criterion: Criterion, types: list[str]) -> Clause:
        ref = index_table("reference", types).alias()
        targets = []
        for target_type in criterion.chain_types:
            target = RESOURCE.alias()
            ids = select(target.c.id).where(
                target.c.type == target_type,
                target.c.deleted == false(),
                self.condition(criterion.chain, [target_type], target),
                *self._visible(target, [target_type]),
            )
            targets.append(and_(ref.c.target_type == target_type, ref.c.target_id.in_(ids)))
        return Clause(self._rows(ref, types, criterion.param.code, or_(*targets)), ref, rank=2)

    def _has(self, has: Has, types: list[str], r: FromClause) -> Condition:
        source = RESOURCE.alias()
        inner = (
            self._has(has.inner, [has.type], source)
            if has.inner is not None
            else self.condition(has.criterion, [has.type], source)
        )
        ref = index_table("reference", [has.type]).alias()
        pointing = select(ref.c.target_id).where(
            ref.c.type == has.type,
            param_rows(ref, [has.type], has.reference.code),
            ref.c.target_type.in_(types),
            ref.c.resource_pk.in_(
                select(source.c.pk).where(
                    source.c.type == has.type,
                    source.c.deleted == false(),
                    inner,
                    *self._visible(source, [has.type]),
                )
            ),
        )
        return r.c.id.in_(pointing)

    def _composite(self, param: SearchParameter, types: list[str], value: str) -> Clause:
        components = self._components(param)
        parts = split_unescaped(value, "$")
        if len(parts) != len(components):
            raise ParamError(f"{param.code!r} takes {len(components)} values joined by $")
        first = None
        conditions = []
        for (code, component_type, _), part in zip(components, parts, strict=True):
            table = index_table(component_type, types).alias()
            parse = getattr(self, f"_{component_type}")
            condition = _value_condition(component_type, table, *parse(part, None))
            conditions += [table.c.param == code, condition]
            if first is None:
                first = table
                conditions.append(
                    table.c.type == types[0] if len(types) == 1 else table.c.type.in_(types)
                )
                joined = table
            else:
                joined = joined.join(
                    table,
                    and_(
                        table.c.resource_pk == first.c.resource_pk,
                        table.c.composite == first.c.composite,
                    ),
                )
        rows = select(first.c.resource_pk).select_from(joined).where(*conditions)
        return Clause(rows, first, rank=4)

    def _components(self, param: SearchParameter) -> list[tuple[str, str, str]]:
        try:
            return composite_components(self.registry, param)
        except LookupError as exc:
            raise ParamError(f"Composite {param.code!r}: {exc}") from None

    # -- value conditions per parameter type -------------------------------------------------

    def _string(self, value: str, modifier: str | None) -> Parsed:
        if modifier == "exact":
            exact = unescape(value)
            if len(exact) >= MAX_STRING:
                return "exact-cut", (exact[:MAX_STRING],)
            return "exact", (normalize_string(exact), exact)
        text = normalize_string(unescape(value))
        if modifier == "contains":
            return "contains", (f"%{_escape_like(text)}%",)
        return "prefix", (text, _next_prefix(text))

    def _token(self, value: str, modifier: str | None) -> Parsed:
        if modifier == "text":
            text = normalize_string(unescape(value))
            return "text", (text, _next_prefix(text))
        parts = split_unescaped(value, "|")
        if modifier == "of-type":
            if len(parts) != 3:
                raise ParamError(":of-type takes system|code|value")
            return "of-type", tuple(unescape(p) for p in parts)
        if len(parts) == 1:
            return "code", (unescape(parts[0]),)
        if len(parts) != 2:
            raise ParamError(f"Malformed token {value!r}")
        system, code = unescape(parts[0]), unescape(parts[1])
        if not system:
            return "no-system", (code,)
        if not code:
            return "system", (system,)
        return "system-code", (system, code)

    def _reference(self, value: str, modifier: str | None) -> Parsed:
        value = unescape(value)
        if modifier == "identifier":
            system, bar, code = value.rpartition("|")
            if not bar:
                return "identifier-value", (value,)
            if not code:
                return "identifier-system", (system,)
            if not system:
                return "identifier-no-system", (code,)
            return "identifier", (system, code)
        if value.startswith(self.base_url + "/"):
            value = value[len(self.base_url) + 1 :]
        if "://" in value or value.startswith("urn:"):
            url = value.partition("|")[0]
            parts = url.split("/")
            if len(parts) >= 4 and parts[-2] == "_history":
                url = "/".join(parts[:-2])
            return "url", (url,)
        segments = value.split("/")
        if len(segments) >= 4 and segments[-2] == "_history":
            segments = segments[:-2]
        if len(segments) == 2:
            return "typed", (segments[0], segments[1])
        if len(segments) == 1 and value:
            if modifier:  # :[type]
                return "typed", (modifier, value)
            return "id", (value,)
        raise ParamError(f"Malformed reference {value!r}")

    def _date(self, value: str, _modifier: str | None) -> Parsed:
        prefix, text = split_prefix(value)
        try:
            low, high = date_range(text, self.local_zone)
        except ValueError:
            raise ParamError(f"Malformed date {text!r}") from None
        if prefix != "ap":
            return prefix, (low, high)
        # `ap` on dates: 10 % of the distance to now on each side (at least a day).
        gap = max(abs(datetime.now(UTC) - low) / 10, timedelta(days=1))
        wide_low = low - gap if low - MIN_DATE > gap else MIN_DATE
        wide_high = high + gap if MAX_DATE - high > gap else MAX_DATE
        return prefix, (low, high, wide_low, wide_high)

    def _number(self, value: str, _modifier: str | None) -> Parsed:
        return _numeric(*split_prefix(value))

    def _quantity(self, value: str, _modifier: str | None) -> Parsed:
        parts = split_unescaped(value, "|")
        if len(parts) not in (1, 3):
            raise ParamError(f"Malformed quantity {value!r}")
        prefix, numbers = _numeric(*split_prefix(parts[0]))
        system, code = (unescape(parts[1]), unescape(parts[2])) if len(parts) == 3 else ("", "")
        shape = f"{prefix}{'|system' if system else ''}{'|code' if code else ''}"
        return shape, numbers + tuple(v for v in (system, code) if v)

    def _uri(self, value: str, modifier: str | None) -> Parsed:
        value = unescape(value)
        if modifier == "below":
            return "below", (value, _next_prefix(value))
        if modifier == "above":  # stored values that are a path prefix of the search value
            prefixes, cut = [value], value
            while "/" in cut.rstrip("/"):
                cut = cut.rstrip("/").rsplit("/", 1)[0]
                if cut.endswith(":/") or cut.endswith(":"):
                    break
                prefixes.append(cut)
            return "above", tuple(prefixes)
        return "eq", (value,)

    # -- sorting -----------------------------------------------------------------------------

    def sort_expression(
        self,
        code: str,
        param: SearchParameter | None,
        descending: bool,
        types: list[str],
        r: FromClause,
    ) -> Any:
        """A sortable scalar per resource: the smallest value ascending, the largest descending,
        missing values last either way."""
        if code == "_id":
            return r.c.id
        if code == "_lastUpdated":
            return r.c.last_updated
        name, low_end, high_end = {
            "string": ("value_normalized", "", "\U0010ffff"),
            "token": ("code", "", "\U0010ffff"),
            "reference": ("target_id", "", "\U0010ffff"),
            "uri": ("value", "", "\U0010ffff"),
            "date": ("high" if descending else "low", MIN_DATE, MAX_DATE),
            "number": ("value", Decimal("-1e30"), Decimal("1e30")),
            "quantity": ("value", Decimal("-1e30"), Decimal("1e30")),
        }[param.type]
        values = []
        for part in _split(types) if param.type == "reference" else [types]:
            table = index_table(param.type, part)
            column = table.c[name]
            aggregate = func.max(column) if descending else func.min(column)
            where = (table.c.resource_pk == r.c.pk, param_rows(table, part, code))
            values.append(select(aggregate).where(*where).scalar_subquery())
        return func.coalesce(*values, low_end if descending else high_end)
