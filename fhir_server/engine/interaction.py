"""What a door asks of the engine (an `Interaction`) and what it gets back (an `Outcome`)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import ColumnElement, FromClause

from fhir_server.errors import Issue

if TYPE_CHECKING:
    from fhir_server.engine.unit_of_work import UnitOfWork


class Kind(StrEnum):
    """FHIR R4 RESTful interactions (http.html)."""

    READ = "read"
    VREAD = "vread"
    UPDATE = "update"
    PATCH = "patch"
    DELETE = "delete"
    CREATE = "create"
    SEARCH_TYPE = "search-type"
    SEARCH_SYSTEM = "search-system"
    HISTORY_INSTANCE = "history-instance"
    HISTORY_TYPE = "history-type"
    HISTORY_SYSTEM = "history-system"
    CAPABILITIES = "capabilities"
    BATCH = "batch"
    TRANSACTION = "transaction"
    OPERATION = "operation"


WRITES = frozenset({Kind.CREATE, Kind.UPDATE, Kind.PATCH, Kind.DELETE})


class Return(StrEnum):
    """The `Prefer: return=` choices."""

    MINIMAL = "minimal"
    REPRESENTATION = "representation"
    OPERATION_OUTCOME = "OperationOutcome"


class PatchFormat(StrEnum):
    JSON_PATCH = "json-patch"
    FHIRPATH_PATCH = "fhirpath-patch"


Params = list[tuple[str, str]]


@dataclass
class Interaction:
    """One request to the engine, whatever door it came through.

    `params` are the URL query parameters: search criteria for search and the conditional
    interactions (update/delete/patch on a type), `_since`/`_count` for history.
    """

    kind: Kind
    type: str | None = None
    id: str | None = None
    version: str | None = None
    resource: dict[str, Any] | None = None  # body of create/update, Bundle of batch/transaction
    patch: Any = None  # JSON Patch operations or a FHIRPath Patch Parameters resource
    patch_format: PatchFormat | None = None
    params: Params = field(default_factory=list)
    if_match: str | None = None  # a version id (the REST layer strips W/"...")
    if_none_exist: Params | None = None
    if_none_match: str | None = None
    if_modified_since: datetime | None = None
    prefer_return: Return = Return.REPRESENTATION
    compartment: tuple[str, str] | None = None  # ("Patient", "1") for GET Patient/1/Task
    operation: str | None = None  # the name without `$`, for Kind.OPERATION
    strict: bool = False  # Prefer: handling=strict: unknown search parameters are errors
    method: str | None = None  # the HTTP verb, as recorded in history and bundles

    @property
    def is_write(self) -> bool:
        return self.kind in WRITES


# A visibility bound to a unit of work: rows of `r` of `types` → condition, None: all visible.
Visible = Callable[[FromClause, Sequence[str]], ColumnElement[bool] | None]


class Visibility(Protocol):
    """Which stored resources a caller may see, as SQL: every query that returns resources
    (search matches, chained and `_has` targets, includes, totals, reads) adds the condition,
    so that nothing the caller may not see is returned or counted."""

    def condition(
        self, uow: UnitOfWork, r: FromClause, types: Sequence[str], bind: bool = False
    ) -> ColumnElement[bool] | None:
        """The condition on resource rows `r` of `types`, for a query run in `uow`; None when
        all of them are visible. With `bind`, its values are bind parameters (`bound`), so
        that the statement holding it serves other callers of the same shape."""
        ...

    def bound(self, uow: UnitOfWork, types: Sequence[str]) -> tuple[Hashable, dict[str, Any]]:
        """What the SQL of `condition(..., bind=True)` on `types` depends on, and the values
        of its bind parameters."""
        ...

    def visible(self, uow: UnitOfWork, type_: str, ids: set[str]) -> set[str]:
        """Those of the stored resources `type_`/`ids` the caller may see."""
        ...


@dataclass
class Context:
    """Who asks and from where: read by hooks (authorisation, audit), set by the door.

    `principal` is the authenticated caller (`fhir_server.security`); None is the server
    itself (pathway consumers, sweeps, start-up loading) or a server whose security is off.
    `visibility` is set by the authorisation hook for callers who see part of the data only.
    """

    base_url: str = "http://localhost:8080"
    source: str = "rest"  # rest, transaction, hl7v2, cda, mssante, pathway, ...
    principal: Any = None
    visibility: Visibility | None = None


@dataclass
class Outcome:
    """The result of an interaction. `body` is stored FHIR JSON served verbatim; `resource` is a
    resource the server composed (Bundle, CapabilityStatement, ...), possibly holding
    `orjson.Fragment`s of stored JSON."""

    status: int
    body: bytes | None = None
    resource: dict[str, Any] | None = None
    type: str | None = None
    id: str | None = None
    version: int | None = None
    last_updated: datetime | None = None
    created: bool = False
    issues: list[Issue] = field(default_factory=list)
    # (type, id, body) of every resource a read, search or history returned: for the audit.
    returned: list[tuple[str, str, bytes | None]] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        if self.type and self.id and self.version is not None:
            return f"{self.type}/{self.id}/_history/{self.version}"
        return None
