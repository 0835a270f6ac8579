"""A list of ids or keys as one bind parameter: an array on PostgreSQL, a JSON array on SQLite.

`column IN (:a, :b, ...)` with one parameter per item renders a new statement for every length
of the list: SQLAlchemy expands it at each execution, psycopg converts the text again (it
caches only short statements) and never prepares it, SQLite compiles it again. A caller's
related patients are such a list, in every query of every search they make; so are the
resources a page includes. `among` writes `column = ANY(:list)` (PostgreSQL) or
`column IN (SELECT value FROM json_each(:list))` (SQLite): one statement whatever the length,
compiled, converted and prepared once.

On PostgreSQL the list is sent as the text of an array (`{"a","b"}`, cast to the array type in
the statement), written from orjson's text of the list: psycopg's own conversion of a list
walks it in Python, about 17 µs for 24 ids, several lists in every search of a professional.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import orjson
from sqlalchemy import Boolean, ColumnElement, String, TypeDecorator, bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeEngine, UserDefinedType


class _Array(UserDefinedType[list[Any]]):
    """PostgreSQL's array of `element`, bound as its text and cast in the statement
    (`%(name)s::VARCHAR[]`): psycopg sends a string as of unknown type, which the cast types."""

    cache_ok = True
    render_bind_cast = True

    def __init__(self, element: str) -> None:
        self.element = element

    def get_col_spec(self, **kw: Any) -> str:
        return f"{self.element}[]"


class _List(TypeDecorator[list[Any]]):
    """A list of `element`s, bound as one parameter."""

    impl = String
    cache_ok = True
    element = "VARCHAR"

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return _Array(self.element)
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Iterable[Any] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        items = list(value)
        text = orjson.dumps(items).decode()
        return _array_text(items, text) if dialect.name == "postgresql" else text


def _array_text(items: list[Any], json: str) -> str:
    """The text of a PostgreSQL array of `items` (strings or integers), from their `json`:
    the same between the brackets, but for JSON's escapes (quotes, backslashes and control
    characters), where each element is quoted and escaped as PostgreSQL reads it."""
    if "\\" not in json:
        return "{" + json[1:-1] + "}"
    quoted = (str(item).replace("\\", "\\\\").replace('"', '\\"') for item in items)
    return "{" + ",".join(f'"{item}"' for item in quoted) + "}"


class IdList(_List):
    """Resource ids (or any strings)."""

    cache_ok = True


class KeyList(_List):
    """Primary keys."""

    cache_ok = True
    element = "BIGINT"


def id_list(name: str | None = None, value: Iterable[str] | None = None) -> BindParameter[Any]:
    """A bind parameter holding a list of ids: `value`, or one given at execution."""
    if value is None:
        return bindparam(name, type_=IdList())
    return bindparam(name, list(value), type_=IdList())


def key_list(name: str | None = None, value: Iterable[int] | None = None) -> BindParameter[Any]:
    """A bind parameter holding a list of primary keys: `value`, or one given at execution."""
    if value is None:
        return bindparam(name, type_=KeyList())
    return bindparam(name, list(value), type_=KeyList())


class _Among(ColumnElement[bool]):
    """`column` is (or, `negated`, is not) one of the list `values`."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a condition of its own: no "= 1" where booleans are ints
    _traverse_internals: ClassVar = [
        ("column", InternalTraversal.dp_clauseelement),
        ("values", InternalTraversal.dp_clauseelement),
        ("negated", InternalTraversal.dp_boolean),
    ]

    def __init__(self, column: ColumnElement[Any], values: BindParameter[Any], negated: bool):
        self.column = column
        self.values = values
        self.negated = negated

    def _negate(self) -> _Among:
        return _Among(self.column, self.values, not self.negated)


def among(column: ColumnElement[Any], values: BindParameter[Any] | Iterable[str]) -> _Among:
    """`column IN values`: a parameter of `id_list` or `key_list`, or a list of ids."""
    return _Among(column, _as_param(values), negated=False)


def not_among(column: ColumnElement[Any], values: BindParameter[Any] | Iterable[str]) -> _Among:
    """`column NOT IN values` (NULL for a NULL column, as NOT IN)."""
    return _Among(column, _as_param(values), negated=True)


def _as_param(values: BindParameter[Any] | Iterable[str]) -> BindParameter[Any]:
    return values if isinstance(values, BindParameter) else id_list(value=values)


@compiles(_Among, "postgresql")
def _any(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    column, values = compiler.process(element.column, **kw), compiler.process(element.values, **kw)
    return f"({column} <> ALL ({values}))" if element.negated else f"({column} = ANY ({values}))"


@compiles(_Among)
def _json_each(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    column, values = compiler.process(element.column, **kw), compiler.process(element.values, **kw)
    operator = "NOT IN" if element.negated else "IN"
    return f"({column} {operator} (SELECT value FROM json_each({values})))"
