"""The search service: index rows at write time, and the search interaction at read time —
criteria, sorting, keyset paging, totals, `_include`/`_revinclude`, searchset Bundles."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable
from datetime import datetime
from decimal import Decimal
from functools import cache, partial
from typing import TYPE_CHECKING, Any

import orjson
from cachetools import LRUCache
from sqlalchemy import Select, Table, and_, false, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from fhir_server.caches import Kept
from fhir_server.engine import paging
from fhir_server.engine.interaction import (
    Context,
    Interaction,
    Kind,
    Outcome,
    Params,
    Visibility,
    Visible,
)
from fhir_server.engine.unit_of_work import UnitOfWork
from fhir_server.engine.versioning import instant, now
from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.formats.json_format import loads
from fhir_server.model.registry import resource_types
from fhir_server.search.compartment import compartment_params
from fhir_server.search.criteria import (
    RESULT_PARAMS,
    UNSUPPORTED_RESULT_PARAMS,
    Criterion,
    ParamError,
    Parser,
    SearchRequest,
)
from fhir_server.search.extract import index_rows
from fhir_server.search.normalize import zone
from fhir_server.search.parameters import Registry, default_registry
from fhir_server.search.sql import (
    REFERENCE_TABLES,
    RESOURCE,
    VERSION,
    Prepared,
    SqlBuilder,
    index_table,
    param_rows,
)
from fhir_server.search.summary import SUMMARY_VALUES, subset
from fhir_server.settings import Settings
from fhir_server.storage.lists import among, key_list
from fhir_server.storage.repository import StoredVersion

if TYPE_CHECKING:
    from fhir_server.engine.engine import Engine


class Search:
    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or default_registry()
        self.local_zone = zone(settings.timezone)
        self.parser = Parser(self.registry)
        # The page selects of searches whose SQL depends on the shape of their criteria only
        # (`sql.Prepared`) and of the caller's part of the data (`Visibility.bound`), built
        # once per shape: building a select and its SQLAlchemy cache key was 40 % of an INS
        # lookup's time in the server. Searches with a page token, a compartment, a chain,
        # `_has`, a composite or `:missing` are built each time.
        self._statements: Kept[Hashable, Select] = Kept(LRUCache(1024))

    # -- write side --------------------------------------------------------------------------

    def index(
        self, uow: UnitOfWork, resource_pk: int, type_: str, resource: dict, replace: bool = False
    ) -> dict[type, list[dict]]:
        """Buffer the index rows of a version, in place of the previous version's when
        `replace`; returns them (table class → rows)."""
        rows = self.rows(type_, resource)
        if replace:
            uow.repository.replace_index_rows(resource_pk, type_, rows)
        else:
            uow.repository.add_index_rows(resource_pk, rows)
        return rows

    def rows(self, type_: str, resource: dict) -> dict[type, list[dict]]:
        """The index rows of a version (table class → rows), written nowhere."""
        return index_rows(self.registry, type_, resource, self.local_zone)

    # -- read side ---------------------------------------------------------------------------

    def match(
        self,
        uow: UnitOfWork,
        type_: str,
        params: Params,
        limit: int,
        visibility: Visibility | None = None,
    ) -> list[str]:
        """Ids of the resources matching criteria (conditional interactions): strict parsing."""
        visible = _bound(visibility, uow)
        request = self.parse([type_], params, strict=True, visible=visible)
        uow.repository.flush()
        r = RESOURCE
        builder = SqlBuilder(self.registry, self.local_zone, "", visible)
        where = self._where(request, builder) + _seen(visible, r, [type_])
        stmt = select(r.c.id).where(*where).order_by(r.c.pk)
        return list(uow.conn.execute(stmt.limit(limit)).scalars())

    def parse(
        self,
        types: list[str],
        params: Params,
        strict: bool,
        base_url: str = "",
        visible: Visible | None = None,
    ) -> SearchRequest:
        request = SearchRequest(types=types)
        builder = SqlBuilder(self.registry, self.local_zone, base_url, visible)
        for name, value in params:
            try:
                self._parse_one(request, name, value, builder)
            except ParamError as exc:
                if strict:
                    raise bad_request(str(exc), name) from None
                request.problems.append(f"Parameter {name}={value} ignored: {exc}")
        return request

    def _parse_one(
        self, request: SearchRequest, name: str, value: str, builder: SqlBuilder
    ) -> None:
        base, _, modifier = name.partition(":")
        if base in UNSUPPORTED_RESULT_PARAMS:
            raise ParamError(f"{base} is not supported")
        if base not in RESULT_PARAMS:
            criterion = self.parser.criterion(request.types, name, value)
            # Values are read now, so that a malformed value (a bad date, number, token...) is
            # a problem of this parameter, which lenient handling then ignores, rather than a
            # failure of the whole search. A prepared criterion's SQL is built when needed.
            prepared = builder.prepare(criterion, request.types)
            if prepared is None:
                request.clauses.append(builder.clause(criterion, request.types, RESOURCE))
            else:
                request.clauses.append(prepared)
            request.criteria.append(criterion)
        elif base == "_count":
            if not value.isdigit():
                raise ParamError("_count takes a non-negative integer")
            request.count = min(int(value), self.settings.max_page_size)
        elif base == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise ParamError("_total takes none, estimate or accurate")
            request.total = value  # type: ignore[assignment]
        elif base == "_summary":
            if value not in SUMMARY_VALUES:
                raise ParamError(f"_summary takes one of {', '.join(SUMMARY_VALUES)}")
            request.summary = value
        elif base == "_elements":
            request.elements = [e.strip() for e in value.split(",") if e.strip()]
        elif base == "_sort":
            request.sort = self.parser.sort(request.types, value)
        elif base in ("_include", "_revinclude"):
            if modifier not in ("", "iterate", "recurse"):
                raise ParamError(f"Unknown modifier {base}:{modifier}")
            include = self.parser.include(value, bool(modifier), base == "_revinclude")
            (request.revinclude if base == "_revinclude" else request.include).append(include)
        elif base == "_page":
            request.page = value
            return  # not part of the self link
        request.used.append((name, value))

    def _where(self, request: SearchRequest, builder: SqlBuilder) -> list[Any]:
        """The WHERE of a search's criteria on `resource`: the most selective criterion's rows
        drive (`pk IN`), the others are checked per candidate (`EXISTS`). The values of
        prepared criteria are bound by name (`_binds`). What the caller may see is apart
        (`_seen`)."""
        r, types = RESOURCE, request.types
        clauses = [
            builder.clause(c.criterion, types, r, c, f"c{i}") if isinstance(c, Prepared) else c
            for i, c in enumerate(request.clauses)
        ]
        drivers = [c for c in clauses if c.rows is not None]
        driver = min(drivers, key=lambda c: c.rank) if drivers else None
        if any(c.rank == 0 for c in clauses):  # `_id`: the (type, id) key drives
            driver = None
        conditions = [r.c.deleted == false()]
        if driver is None:
            conditions.append(r.c.type == types[0] if len(types) == 1 else r.c.type.in_(types))
        conditions += [c.on(r, drive=c is driver) for c in clauses]
        if request.compartment:
            conditions.append(or_(*[builder.condition(c, types, r) for c in request.compartment]))
        return conditions

    def search(self, engine: Engine, uow: UnitOfWork, ix: Interaction, ctx: Context) -> Outcome:
        strict = ix.strict
        params = list(ix.params)
        types = self._system_types(params) if ix.kind is Kind.SEARCH_SYSTEM else [ix.type]
        uow.repository.flush()
        visible = _bound(ctx.visibility, uow)
        request = self.parse(types, params, strict, ctx.base_url, visible)
        if ix.compartment is not None:
            request.compartment = self._compartment(ix.compartment, ix.type)
        builder = SqlBuilder(self.registry, self.local_zone, ctx.base_url, visible)
        r = RESOURCE
        count = request.count if request.count is not None else self.settings.default_page_size
        token = paging.decode(request.page) if request.page else None
        key = _statement_key(request, count, token)
        binds = _binds(request)
        filtered = visible
        if key is not None and ctx.visibility is not None:
            # The caller's part of the data, bound by name too: one statement per shape of it.
            shape, values = ctx.visibility.bound(uow, types)
            key, filtered = (key, shape), partial(ctx.visibility.condition, uow, bind=True)
            binds.update(values)
        statement = self._statements.get(key) if key is not None else None

        @cache
        def where() -> list[Any]:
            try:
                return self._where(request, builder)
            except ParamError as exc:
                raise bad_request(str(exc)) from None

        def matching() -> list[Any]:
            return where() + _seen(filtered, r, types)

        if statement is None:
            where()  # a malformed criterion fails the search before any answer
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "id": None,
            "meta": {"lastUpdated": instant(now())},
            "type": "searchset",
        }
        if request.summary == "count" or count == 0:
            bundle["total"] = self._count(uow, r, matching())
            bundle["link"] = [self._link("self", ctx, ix, request.used)]
            return self._finish(bundle, request)

        backwards = bool(token and token.get("back"))
        if statement is None:
            postgres = uow.repository.is_postgres
            statement = self._statement(
                request, builder, where(), count, token, backwards, filtered, postgres
            )
            if key is not None:
                self._statements.put(key, statement)
        rows = uow.conn.execute(statement, binds).all()  # one fetchall
        more = len(rows) > count
        rows = rows[:count]
        if backwards:
            rows.reverse()
        matches = [StoredVersion(*row[:7]) for row in rows]  # pk is the resource's

        def position(row: Any) -> list[Any]:
            return [*row[7:], row[0]]

        links = [self._link("self", ctx, ix, request.used)]
        if rows and (more or backwards):
            links.append(self._link("next", ctx, ix, request.used, position(rows[-1]), back=False))
        if rows and token and (more or not backwards):
            links.append(
                self._link("previous", ctx, ix, request.used, position(rows[0]), back=True)
            )
        total = self._total(request, uow, r, matching, token, more, len(matches), visible)
        if total is not None:
            bundle["total"] = total
        bundle["link"] = links
        included, capped = self._includes(uow, request, matches, ctx.visibility)
        entries = [self._entry(ctx, s, "match", request) for s in matches]
        entries += [self._entry(ctx, s, "include", request) for s in included]
        bundle["entry"] = entries
        if capped:
            request.problems.append(
                f"Included resources were capped at {self.settings.max_include}"
            )
        outcome = self._finish(bundle, request)
        outcome.returned = [(s.type, s.id, s.body) for s in (*matches, *included)]
        return outcome

    def _statement(
        self,
        request: SearchRequest,
        builder: SqlBuilder,
        where: list[Any],
        count: int,
        token: dict | None,
        backwards: bool,
        visible: Visible | None,
        postgres: bool,
    ) -> Select:
        """The page's select: current versions matching `where` that the caller may see
        (`visible`), with their sort keys, in order, after (or, `backwards`, before) the
        position of the paging `token`.

        The candidates are ordered on their keys alone, then joined to their versions: a page
        reads the bodies of its own rows only. On PostgreSQL what the caller may see is judged
        on the ordered candidates, one after the other until the page is full, not on all of
        them (a nurse's worklist may have thousands of open tasks for a page of fifty). SQLite
        would judge all of them after materialising the ordered candidates, and sort them
        again: there it is judged before ordering."""
        r, keys = RESOURCE, request.sort
        if not postgres:
            where, visible = [*where, *_seen(visible, r, request.types)], None
        sort_exprs = [
            builder.sort_expression(k.code, k.param, k.descending, request.types, r) for k in keys
        ]
        directions = [k.descending for k in keys] + [False]
        labels = [e.label(f"k{i}") for i, e in enumerate(sort_exprs)]  # computed once per row
        # Without `_sort` the candidates are read in key order, each joined to its version, up
        # to the page's end: in one step, as SQLite would materialise a subquery.
        direct = not keys and visible is None
        selected = _COLUMNS if direct else (r.c.pk, r.c.type, r.c.id, r.c.version)
        candidates = select(*selected, *labels).where(*where)
        if direct:
            candidates = candidates.select_from(RESOURCE.join(VERSION, _CURRENT))
        if token:
            exprs = [*sort_exprs, r.c.pk]
            candidates = candidates.where(
                _after(exprs, directions, _decode_values(token["k"]), backwards)
            )

        def order(columns: list[Any]) -> list[Any]:
            return [
                c.desc() if descending != backwards else c.asc()
                for c, descending in zip(columns, directions, strict=True)
            ]

        candidates = candidates.order_by(*order([*labels, r.c.pk]))
        if direct:
            return candidates.limit(count + 1)
        seen = None
        if visible is not None:
            # OFFSET 0 keeps the visibility out of the ordered candidates: PostgreSQL does not
            # merge a subquery with an offset into its outer query.
            page = candidates.offset(0).subquery("page")
            seen = visible(page, request.types)
        if seen is None:
            page = candidates.limit(count + 1).subquery("page")
        keyed = [page.c[label.name] for label in labels]
        stmt = select(page.c.pk, *_COLUMNS[1:], *keyed).select_from(
            page.join(
                VERSION,
                and_(VERSION.c.resource_pk == page.c.pk, VERSION.c.version == page.c.version),
            )
        )
        if seen is not None:
            stmt = stmt.where(seen)
        return stmt.order_by(*order([*keyed, page.c.pk])).limit(count + 1)

    def _system_types(self, params: Params) -> list[str]:
        for name, value in params:
            if name == "_type":
                types = [t.strip() for t in value.split(",") if t.strip()]
                unknown = [t for t in types if t not in resource_types()]
                if unknown:
                    raise bad_request(f"Unknown resource types in _type: {', '.join(unknown)}")
                return types
        return sorted(resource_types())

    def _compartment(self, compartment: tuple[str, str], type_: str) -> list[Criterion]:
        """Criteria (ORed) placing a resource in the compartment."""
        comp_type, comp_id = compartment
        codes = compartment_params(comp_type, type_)
        if codes is None:
            raise FhirError.of(404, "not-found", f"{type_} is not in the {comp_type} compartment")
        if not codes:  # the compartment's own resource
            return [self.parser.criterion([type_], "_id", comp_id)]
        return [self.parser.criterion([type_], code, f"{comp_type}/{comp_id}") for code in codes]

    def _count(self, uow: UnitOfWork, r: Any, where: list[Any]) -> int:
        return uow.conn.execute(select(func.count()).select_from(r).where(*where)).scalar_one()

    def _total(
        self,
        request: SearchRequest,
        uow: UnitOfWork,
        r: Any,
        where: Callable[[], list[Any]],
        token: dict | None,
        more: bool,
        found: int,
        visible: Visible | None,
    ) -> int | None:
        if request.total == "none":
            return None
        if not token and not more:
            return found  # exact and free when it all fits one page
        # The planner's estimate comes from statistics of all the data, not the caller's part.
        if request.total == "accurate" or (request.total == "estimate" and visible):
            return self._count(uow, r, where())
        if request.total == "estimate":
            return self._estimate(uow, r, where())
        return None

    def _estimate(self, uow: UnitOfWork, r: Any, where: list[Any]) -> int:
        """The PostgreSQL planner's row estimate of the search (`EXPLAIN`, nothing is run),
        where `count(*)` would read every match; SQLite has no estimate: the exact count."""
        if uow.conn.dialect.name != "postgresql":
            return self._count(uow, r, where)
        plan = uow.conn.execute(_Explain(select(r.c.pk).where(*where))).scalar_one()
        if isinstance(plan, str | bytes):
            plan = orjson.loads(plan)
        return max(0, round(plan[0]["Plan"]["Plan Rows"]))

    def _includes(
        self,
        uow: UnitOfWork,
        request: SearchRequest,
        matches: list[StoredVersion],
        visibility: Visibility | None,
    ) -> tuple[list[StoredVersion], bool]:
        if not (request.include or request.revinclude):
            return [], False
        cap = self.settings.max_include
        seen = {(s.type, s.id) for s in matches}
        found: list[StoredVersion] = []
        frontier, first = matches, True
        while frontier and len(found) < cap:
            fresh: list[StoredVersion] = []
            included = self._included(uow, request, frontier, first)
            for stored in self._visible(uow, included, visibility):
                if (stored.type, stored.id) not in seen:
                    seen.add((stored.type, stored.id))
                    fresh.append(stored)
            found += fresh
            frontier, first = fresh, False
        return found[:cap], len(found) > cap

    @staticmethod
    def _visible(
        uow: UnitOfWork, found: list[StoredVersion], visibility: Visibility | None
    ) -> list[StoredVersion]:
        """The included resources the caller may see, judged once their types are known (an
        include may reach any type), before `:iterate` goes on from them."""
        if visibility is None or not found:
            return found
        by_type: dict[str, set[str]] = {}
        for stored in found:
            by_type.setdefault(stored.type, set()).add(stored.id)
        seen = {
            (type_, id_)
            for type_, ids in by_type.items()
            for id_ in visibility.visible(uow, type_, ids)
        }
        return [s for s in found if (s.type, s.id) in seen]

    def _included(
        self, uow: UnitOfWork, request: SearchRequest, frontier: list[StoredVersion], first: bool
    ) -> list[StoredVersion]:
        """The resources `_include` and `_revinclude` add for `frontier`, each include one
        query joining the reference index to the current versions."""
        by_type: dict[str, list[StoredVersion]] = {}
        for stored in frontier:
            by_type.setdefault(stored.type, []).append(stored)
        statements = []
        for include in request.include:
            source_type = include.source_type
            if not (first or include.iterate) or (source_type and source_type not in by_type):
                continue
            # The sources' reference rows, per table: the audit trail's are apart.
            tables: dict[Table, list[int]] = {}
            for s in by_type[source_type] if source_type else frontier:
                tables.setdefault(index_table("reference", [s.type]), []).append(s.pk)
            for ref, sources in tables.items():
                stmt = _through(ref, pointed_to=True).where(
                    among(ref.c.resource_pk, key_list(value=sources))
                )
                if include.param is not None:
                    stmt = stmt.where(param_rows(ref, [source_type], include.param))
                if include.target_type is not None:
                    stmt = stmt.where(ref.c.target_type == include.target_type)
                statements.append(stmt)
        for include in request.revinclude:
            if not (first or include.iterate):
                continue
            pointed = [(t, [s.id for s in group]) for t, group in by_type.items()]
            source = include.source_type
            for ref in [index_table("reference", [source])] if source else REFERENCE_TABLES:
                stmt = _through(ref, pointed_to=False).where(
                    or_(
                        *[
                            and_(ref.c.target_type == t, among(ref.c.target_id, ids))
                            for t, ids in pointed
                        ]
                    )
                )
                if include.source_type is not None:
                    stmt = stmt.where(ref.c.type == include.source_type)
                if include.param is not None:
                    stmt = stmt.where(param_rows(ref, [source], include.param))
                statements.append(stmt)
        return [StoredVersion(*row) for stmt in statements for row in uow.conn.execute(stmt).all()]

    def _entry(
        self, ctx: Context, stored: StoredVersion, mode: str, request: SearchRequest
    ) -> dict[str, Any]:
        body: Any = orjson.Fragment(stored.body)
        if request.summary not in (None, "false") or request.elements:
            body = subset(loads(stored.body), request.summary, request.elements)
        return {
            "fullUrl": f"{ctx.base_url}/{stored.type}/{stored.id}",
            "resource": body,
            "search": {"mode": mode},
        }

    def _link(
        self,
        relation: str,
        ctx: Context,
        ix: Interaction,
        used: Params,
        position: list[Any] | None = None,
        back: bool = False,
    ) -> dict[str, str]:
        path = ix.type or ""
        if ix.compartment is not None:
            path = f"{ix.compartment[0]}/{ix.compartment[1]}/{ix.type}"
        params = list(used)
        if position is not None:
            token = paging.encode({"k": _encode_values(position), "back": back})
            params.append((paging.PAGE_PARAM, token))
        return {"relation": relation, "url": paging.url(ctx.base_url, path, params)}

    def _finish(self, bundle: dict[str, Any], request: SearchRequest) -> Outcome:
        bundle["id"] = str(uuid.uuid4())
        if request.problems:
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [
                    Issue("not-supported", text, "warning").to_json() for text in request.problems
                ],
            }
            bundle.setdefault("entry", []).append(
                {"resource": outcome, "search": {"mode": "outcome"}}
            )
        return Outcome(200, resource=bundle)


# The selects every search and include starts from, built once: SQLAlchemy expressions are
# immutable, and building them was a share of every search's fixed cost.
_COLUMNS = (
    RESOURCE.c.pk,
    VERSION.c.type,
    VERSION.c.id,
    VERSION.c.version,
    VERSION.c.last_updated,
    VERSION.c.method,
    VERSION.c.body,
)
_CURRENT = and_(VERSION.c.resource_pk == RESOURCE.c.pk, VERSION.c.version == RESOURCE.c.version)


@cache
def _through(ref: Table, pointed_to: bool) -> Select:
    """The current versions of the resources that rows of the reference table `ref` point to
    (`_include`), or that they belong to (`_revinclude`)."""
    joined = (
        and_(RESOURCE.c.type == ref.c.target_type, RESOURCE.c.id == ref.c.target_id)
        if pointed_to
        else RESOURCE.c.pk == ref.c.resource_pk
    )
    return (
        select(*_COLUMNS)
        .select_from(ref.join(RESOURCE, joined).join(VERSION, _CURRENT))
        .where(RESOURCE.c.deleted == false())
    )


def _statement_key(request: SearchRequest, count: int, token: dict | None) -> Hashable | None:
    if token or request.compartment:
        return None
    if not all(isinstance(c, Prepared) for c in request.clauses):
        return None
    return (
        tuple(request.types),
        tuple(c.key for c in request.clauses),
        tuple((k.code, k.descending) for k in request.sort),
        count,
    )


def _binds(request: SearchRequest) -> dict[str, Any]:
    """The values of the prepared criteria, by the names `Search._where` bound them with."""
    binds: dict[str, Any] = {}
    for i, clause in enumerate(request.clauses):
        if isinstance(clause, Prepared):
            binds.update(clause.binds(f"c{i}"))
    return binds


def _bound(visibility: Visibility | None, uow: UnitOfWork) -> Visible | None:
    return partial(visibility.condition, uow) if visibility is not None else None


def _seen(visible: Visible | None, r: Any, types: list[str]) -> list[Any]:
    """What the caller may see of `r`, as a WHERE: none when they see it all."""
    condition = visible(r, types) if visible is not None else None
    return [] if condition is None else [condition]


class _Explain(Executable, ClauseElement):
    """`EXPLAIN (FORMAT JSON) <statement>` (PostgreSQL), its parameters bound as usual."""

    inherit_cache = False

    def __init__(self, statement: Any) -> None:
        self.statement = statement


@compiles(_Explain, "postgresql")
def _compile_explain(element: _Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.statement, **kw)


def _after(exprs: list[Any], descending: list[bool], values: list[Any], backwards: bool) -> Any:
    """Rows strictly after (or before, going backwards) the keyset position `values`."""
    condition = None
    for expr, desc, value in reversed(list(zip(exprs, descending, values, strict=True))):
        forward = desc == backwards  # ascending order read forwards, or descending backwards
        beyond = expr > value if forward else expr < value
        condition = beyond if condition is None else or_(beyond, and_(expr == value, condition))
    return condition


def _encode_values(values: list[Any]) -> list[list[str]]:
    out = []
    for value in values:
        if isinstance(value, datetime):
            out.append(["d", value.isoformat()])
        elif isinstance(value, Decimal | float) and not isinstance(value, bool):
            out.append(["n", str(value)])
        elif isinstance(value, int):
            out.append(["i", str(value)])
        else:
            out.append(["s", str(value)])
    return out


def _decode_values(values: list[list[str]]) -> list[Any]:
    decode = {"d": datetime.fromisoformat, "n": Decimal, "i": int, "s": str}
    try:
        return [decode[tag](text) for tag, text in values]
    except (KeyError, ValueError, TypeError):
        raise bad_request("Invalid _page token") from None
