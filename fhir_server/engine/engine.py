"""The interaction engine: authorise → validate → store (+ version, + index, + outbox) → commit.

Every door builds an `Interaction` and calls `Engine.execute`; batch and transaction Bundles and
after-commit consumers run their interactions inside a `UnitOfWork` with `Engine.run`. Hooks
(see `hooks.py`) attach the cross-cutting concerns.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from fhir_server.capabilities import capability_statement
from fhir_server.engine.bundle import process_bundle
from fhir_server.engine.history import history_bundle
from fhir_server.engine.hooks import HookPoint, Hooks
from fhir_server.engine.interaction import (
    Context,
    Interaction,
    Kind,
    Outcome,
    Params,
    PatchFormat,
    Visibility,
)
from fhir_server.engine.unit_of_work import Change, UnitOfWork
from fhir_server.engine.versioning import content_hash, now, stamp
from fhir_server.errors import (
    FhirError,
    Issue,
    bad_request,
    conflict,
    gone,
    not_found,
    precondition_failed,
)
from fhir_server.formats.json_format import dumps, loads
from fhir_server.model.registry import is_resource_type
from fhir_server.model.structure import check_resource
from fhir_server.operations import Operation
from fhir_server.patch.fhirpath_patch import apply_fhirpath_patch
from fhir_server.patch.json_patch import apply_json_patch
from fhir_server.settings import Settings
from fhir_server.storage.database import Database
from fhir_server.storage.repository import Current, StoredVersion

ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_RETRIES = 5
T = TypeVar("T")
# PostgreSQL: serialization_failure, deadlock_detected
_RETRYABLE_SQLSTATES = {"40001", "40P01"}


class SearchService(Protocol):
    """What the engine needs of search: index a version, find resources by criteria."""

    def index(
        self, uow: UnitOfWork, resource_pk: int, type_: str, resource: dict
    ) -> dict[type, list[dict]]: ...

    def rows(self, type_: str, resource: dict) -> dict[type, list[dict]]: ...

    def match(
        self,
        uow: UnitOfWork,
        type_: str,
        params: Params,
        limit: int,
        visibility: Visibility | None = None,
    ) -> list[str]: ...

    def search(
        self, engine: Engine, uow: UnitOfWork, interaction: Interaction, context: Context
    ) -> Outcome: ...


class _Retry(Exception):
    """Another writer changed the same resource between our read and our write."""


Handler = Callable[["Engine", UnitOfWork, Interaction, Context], Outcome]


class Engine:
    def __init__(
        self,
        database: Database,
        settings: Settings,
        search: SearchService,
        hooks: Hooks | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.search = search
        self.hooks = hooks or Hooks()
        # (consumer name, the resource types it handles or None for all): who gets an outbox
        # row for each change.
        self.outbox_consumers: list[tuple[str, frozenset[str] | None]] = []
        self.operations: dict[str, Operation] = {}

    # -- entry points ----------------------------------------------------------------------------

    def execute(self, interaction: Interaction, context: Context) -> Outcome:
        """Run one interaction in its own database transaction, retrying write conflicts."""
        if interaction.kind in (Kind.BATCH, Kind.TRANSACTION):
            return process_bundle(self, interaction, context)
        self.hooks.run(HookPoint.BEFORE_TRANSACTION, context, [interaction])
        return self.in_transaction(
            self.writes(interaction), context, lambda uow: self.run(uow, interaction, context)
        )

    def writes(self, interaction: Interaction) -> bool:
        """Whether the interaction may change data (a write transaction on SQLite)."""
        if interaction.kind is Kind.OPERATION:
            operation = self.operations.get(interaction.operation or "")
            return operation is not None and operation.affects_state
        return interaction.is_write

    def register_operation(self, operation: Operation) -> None:
        self.operations[operation.name] = operation

    def in_transaction(self, write: bool, context: Context, work: Callable[[UnitOfWork], T]) -> T:
        """Run `work` in a unit of work, committed at the end, retried on write conflicts."""
        for _ in range(_RETRIES):
            uow: UnitOfWork | None = None
            try:
                with self.unit_of_work(write) as uow:
                    outcome = work(uow)
                    self.hooks.run(HookPoint.BEFORE_COMMIT, context, uow)
            except FhirError as exc:
                if uow is not None:
                    self.hooks.run(HookPoint.AFTER_TRANSACTION, context, uow, exc)
                raise
            except _Retry:
                continue
            except IntegrityError:
                continue  # a concurrent creation of the same resource id
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
                    continue
                raise
            if uow.changes:
                self.hooks.run(HookPoint.AFTER_COMMIT, context, uow.changes)
            self.hooks.run(HookPoint.AFTER_TRANSACTION, context, uow, None)
            return outcome
        raise conflict(f"Concurrent writers kept changing the same resources ({_RETRIES} tries)")

    @contextmanager
    def unit_of_work(self, write: bool) -> Iterator[UnitOfWork]:
        with self.database.transaction(write) as conn:
            uow = UnitOfWork(conn, self.database.is_postgres, write, self.database.resource_keys)
            yield uow
            # The buffered rows, with the COMMIT if it can. What a read writes is the audit
            # trail of its reads: not worth a wait for the disk (docs/security.md).
            uow.repository.flush_and_commit(durable=write)

    def run(self, uow: UnitOfWork, interaction: Interaction, context: Context) -> Outcome:
        """Run an interaction inside an existing unit of work (bundle entries, consumers)."""
        try:
            self.hooks.run(HookPoint.BEFORE_INTERACTION, context, interaction)
            outcome = self.dispatch(uow, interaction, context)
        except FhirError as exc:
            if exc.interaction is None:  # the innermost interaction is the one refused
                exc.interaction = interaction
            raise
        self.hooks.run(HookPoint.AFTER_INTERACTION, context, uow, interaction, outcome)
        return outcome

    def dispatch(self, uow: UnitOfWork, interaction: Interaction, context: Context) -> Outcome:
        if interaction.type is not None and not is_resource_type(interaction.type):
            raise not_found(f"Resource type {interaction.type!r} is not supported by this server")
        handler = _HANDLERS.get(interaction.kind)
        if handler is None:
            raise FhirError.of(405, "not-supported", f"{interaction.kind} is not supported")
        if not interaction.is_write:  # reads of this unit of work see its buffered index rows
            uow.repository.flush()
        return handler(self, uow, interaction, context)

    # -- reads -----------------------------------------------------------------------------------

    def read(self, uow: UnitOfWork, ix: Interaction, ctx: Context) -> Outcome:
        stored = uow.repository.read(ix.type, ix.id) if ID_PATTERN.fullmatch(ix.id or "") else None
        if stored is None:
            raise not_found(f"{ix.type}/{ix.id} is not known")
        self.check_visible(uow, ctx, ix.type, ix.id)
        if stored.body is None:
            raise _gone(stored)
        if ix.if_none_match == str(stored.version) or (
            ix.if_modified_since is not None  # HTTP dates have whole seconds
            and stored.last_updated.replace(microsecond=0) <= ix.if_modified_since
        ):
            return _outcome(304, stored, with_body=False)
        return _outcome(200, stored)

    def vread(self, uow: UnitOfWork, ix: Interaction, ctx: Context) -> Outcome:
        version = int(ix.version) if (ix.version or "").isdigit() else 0
        stored = uow.repository.read_version(ix.type, ix.id, version) if version else None
        if stored is None:
            raise not_found(f"{ix.type}/{ix.id}/_history/{ix.version} is not known")
        self.check_visible(uow, ctx, ix.type, ix.id)
        if stored.body is None:
            raise _gone(stored)
        return _outcome(200, stored)

    # -- writes ----------------------------------------------------------------------------------

    def check_visible(self, uow: UnitOfWork, ctx: Context, type_: str, id_: str) -> None:
        """Refuse (403) a resource the caller may not see. A deleted one has no index rows left:
        it belongs to no patient any more, and a caller who may read its type gets its 410."""
        if ctx.visibility is not None and id_ not in ctx.visibility.visible(uow, type_, {id_}):
            raise FhirError.of(
                403,
                "forbidden",
                f"{type_}/{id_} belongs to a patient outside your care (care team, tasks, "
                "pathways or consent)",
            )

    def create(self, uow: UnitOfWork, ix: Interaction, ctx: Context) -> Outcome:
        resource = _checked(ix.resource, ix.type)
        if ix.if_none_exist is not None:
            matches = self.matches(uow, ix.type, ix.if_none_exist, "If-None-Exist", ctx)
            if matches:
                return self.read(uow, Interaction(Kind.READ, ix.type, matches[0]), ctx)
        id_ = ix.id or str(uuid.uuid4())  # a transaction assigns ids before its entries run
        return self.store(uow, ctx, "create", ix.type, id_, resource, None, "POST")

    def update(self, uow: UnitOfWork, ix: Interaction, ctx: Context) -> Outcome:
        resource = _checked(ix.resource, ix.type)
        id_ = ix.id
        if id_ is None:  # conditional update
            matches = self.matches(uow, ix.type, ix.params, "conditional update", ctx)
            if matches:
                id_ = matches[0]
                if resource.get("id") not in (None, id_):
                    raise bad_request(
                        f"The resource id {resource['id']!r} is not the id of the matching "
                        f"resource {ix.type}/{id_}",
                        f"{ix.type}.id",
                    )
            else:
                id_ = resource.get("id") or str(uuid.uuid4())
        elif resource.get("id") != id_:
            raise bad_request(
                f"The resource id {resource.get('id')!r} must equal the id in the URL {id_!r}",
                f"{ix.type}.id",
            )
        if not ID_PATTERN.fullmatch(id_):
            raise bad_request(f"{id_!r} is not a valid FHIR id", f"{ix.type}.id")
        current = uow.repository.current(ix.type, id_, for_update=True)
        if current is not None and not current.deleted:  # before If-Match tells its version
            self.check_visible(uow, ctx, ix.type, id_)
        _check_if_match(current, ix.if_match, ix.type, id_)
        return self.store(
            uow, ctx, "update", ix.type, id_, resource, current, "PUT", if_match=ix.if_match
        )

    def patch(self, uow: UnitOfWork, ix: Interaction, ctx: Context) -> Outcome:
        id_ = ix.id or self.single_match(uow, ix.type, ix.params, "conditional patch", ctx)
        current = uow.repository.current(ix.type, id_, for_update=True)
        stored = uow.repository.read(ix.type, id_) if current else None
        if stored is None:
            raise not_found(f"{ix.type}/{id_} is not known")
        self.check_visible(uow, ctx, ix.type, id_)
        if stored.body is None:
            raise _gone(stored)
        _check_if_match(current, ix.if_match, ix.type, id_)
        before = loads(stored.body)
        if ix.patch_format is PatchFormat.JSON_PATCH:
            after = apply_json_patch(before, ix.patch)
        else:
            after = apply_fhirpath_patch(before, ix.patch)
        try:
            check_resource(after, ix.type)
        except FhirError as exc:  # the request was well formed, its result is not
            raise FhirError(422, exc.issues) from None
        return self.store(
            uow,
            ctx,
            "patch",
            ix.type,
            id_,
            after,
            current,
            "PATCH",
            previous=before,
            if_match=ix.if_match,
        )

    def delete(self, uow: UnitOfWork, ix: Interaction, ctx: Context) -> Outcome:
        if ix.id is None:  # conditional delete
            matches = self.matches(uow, ix.type, ix.params, "conditional delete", ctx)
            if not matches:
                return Outcome(204, issues=[_info("No resource matched: nothing was deleted")])
            id_ = matches[0]
        else:
            id_ = ix.id
        current = uow.repository.current(ix.type, id_, for_update=True)
        if current is not None and not current.deleted:
            self.check_visible(uow, ctx, ix.type, id_)
        _check_if_match(current, ix.if_match, ix.type, id_)
        if current is None or current.deleted:
            return Outcome(204, issues=[_info(f"{ix.type}/{id_} does not exist or is deleted")])
        when = now()
        version = current.version + 1
        change = Change(
            "delete",
            ix.type,
            id_,
            version,
            when,
            None,
            current.version,
            uow.repository,
            if_match=ix.if_match,
        )
        self.hooks.run(HookPoint.BEFORE_STORAGE, ctx, change, uow)
        if not uow.repository.advance(current, version, when, True, None):
            raise _Retry
        uow.repository.insert_version(current.pk, ix.type, id_, version, when, "DELETE", None)
        uow.repository.clear_index(current.pk, ix.type)
        self._record(uow, change)
        return Outcome(
            204,
            type=ix.type,
            id=id_,
            version=version,
            last_updated=when,
            issues=[_info(f"{ix.type}/{id_} deleted")],
        )

    def store(
        self,
        uow: UnitOfWork,
        ctx: Context,
        interaction: str,
        type_: str,
        id_: str,
        resource: dict[str, Any],
        current: Current | None,
        method: str,
        previous: dict[str, Any] | None = None,
        if_match: str | None = None,
    ) -> Outcome:
        """Write the next version of a resource, or nothing when its content is unchanged."""
        exists = current is not None and not current.deleted
        when = now()
        version = current.version + 1 if current else 1
        stamped = stamp(resource, id_, version, when)
        digest = content_hash(stamped)
        if exists and digest == current.content_hash:
            stored = uow.repository.read(type_, id_)
            return _outcome(200, stored, issues=[_info("No change: no new version was created")])
        change = Change(
            interaction if exists else "create",
            type_,
            id_,
            version,
            when,
            stamped,
            current.version if exists else None,
            uow.repository,
            if_match=if_match,
        )
        if previous is not None:
            change.__dict__["previous"] = previous
        self.hooks.run(HookPoint.BEFORE_STORAGE, ctx, change, uow)
        stamped = stamp(change.resource, id_, version, when)  # hooks may have changed it
        change.resource = stamped
        digest = content_hash(stamped)
        body = dumps(stamped)
        if current is None:
            pk = uow.repository.insert_resource(type_, id_, version, when, digest)
        else:
            pk = current.pk
            if not uow.repository.advance(current, version, when, False, digest):
                raise _Retry
        uow.repository.insert_version(pk, type_, id_, version, when, method, body)
        change.index = self.search.index(uow, pk, type_, stamped, replace=current is not None)
        self._record(uow, change)

        return Outcome(
            201 if not exists else 200,
            body=body,
            type=type_,
            id=id_,
            version=version,
            last_updated=when,
            created=not exists,
        )

    def append(self, uow: UnitOfWork, type_: str, resource: dict[str, Any]) -> str:
        """Store a resource the server writes about itself (an AuditEvent): a new id, version
        1, with no hook and no outbox event: nothing reacts to it and no rule of the pipeline
        applies to the server's own records. Its index rows are written behind, in batches
        (`fhir_server.search.backlog`): every access writes one, and its rows (one per patient
        it names) cost more than the access they record."""
        id_, when = str(uuid.uuid4()), now()
        stamped = stamp(resource, id_, 1, when)
        pk = uow.repository.insert_resource(type_, id_, 1, when, content_hash(stamped))
        uow.repository.insert_version(pk, type_, id_, 1, when, "POST", dumps(stamped))
        uow.repository.insert_backlog(pk)
        return id_

    def _record(self, uow: UnitOfWork, change: Change) -> None:
        key = (change.type, change.id)
        uow.touched.add(key)
        uow.changes.append(change)
        uow.repository.insert_outbox(
            [
                {
                    "consumer": consumer,
                    "created_at": change.last_updated,
                    "interaction": change.interaction,
                    "resource_type": change.type,
                    "resource_id": change.id,
                    "version": change.version,
                    "attempts": 0,
                    "available_at": change.last_updated,
                }
                for consumer, types in self.outbox_consumers
                if types is None or change.type in types
            ]
        )

    # -- conditional interactions ----------------------------------------------------------------

    def matches(
        self, uow: UnitOfWork, type_: str, params: Params, what: str, ctx: Context
    ) -> list[str]:
        """Ids matching conditional criteria: none or one; several is a 412. A caller who sees
        part of the data matches within it only."""
        if not params:
            raise bad_request(f"{what} needs search criteria")
        if uow.repository.is_postgres:  # two concurrent conditional creates must not both create
            key = type_ + "?" + "&".join(f"{k}={v}" for k, v in sorted(params))
            uow.conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
            )
        found = self.search.match(uow, type_, params, limit=2, visibility=ctx.visibility)
        if len(found) > 1:
            raise precondition_failed(f"{what}: several {type_} resources match the criteria")
        return found

    def single_match(
        self, uow: UnitOfWork, type_: str, params: Params, what: str, ctx: Context
    ) -> str:
        found = self.matches(uow, type_, params, what, ctx)
        if not found:
            raise not_found(f"{what}: no {type_} matches the criteria")
        return found[0]

    # -- the rest --------------------------------------------------------------------------------

    def history(self, uow: UnitOfWork, ix: Interaction, ctx: Context) -> Outcome:
        if ix.kind is Kind.HISTORY_INSTANCE and uow.repository.current(ix.type, ix.id):
            self.check_visible(uow, ctx, ix.type, ix.id)
        bundle, versions = history_bundle(self, uow, ix, ctx)
        return Outcome(200, resource=bundle, returned=[(v.type, v.id, v.body) for v in versions])

    def search_interaction(self, uow: UnitOfWork, ix: Interaction, ctx: Context) -> Outcome:
        return self.search.search(self, uow, ix, ctx)

    def operation(self, uow: UnitOfWork, ix: Interaction, ctx: Context) -> Outcome:
        operation = self.operations.get(ix.operation or "")
        if operation is None:
            raise FhirError.of(404, "not-supported", f"Unknown operation ${ix.operation}")
        level = "instance" if ix.id else "type" if ix.type else "system"
        if level not in operation.levels() or (
            ix.type is not None
            and operation.resource_types is not None
            and ix.type not in operation.resource_types
        ):
            where = f"on {ix.type}" if ix.type else "at the system level"
            raise FhirError.of(
                405, "not-supported", f"${operation.name} cannot be invoked {where} ({level} level)"
            )
        if ix.id is not None and uow.repository.current(ix.type, ix.id) is not None:
            self.check_visible(uow, ctx, ix.type, ix.id)  # an operation on a resource reads it
        if operation.affects_state and ix.method == "GET":
            # R4 operations.html: an operation that changes data is invoked with POST only.
            raise FhirError.of(
                405, "not-supported", f"${operation.name} changes data: invoke it with POST"
            )
        return operation.run(self, uow, ix, ctx)

    def capabilities_interaction(self, _uow: UnitOfWork, _ix: Interaction, ctx: Context) -> Outcome:
        return Outcome(200, resource=capability_statement(self, ctx))


_HANDLERS: dict[Kind, Handler] = {
    Kind.READ: Engine.read,
    Kind.VREAD: Engine.vread,
    Kind.CREATE: Engine.create,
    Kind.UPDATE: Engine.update,
    Kind.PATCH: Engine.patch,
    Kind.DELETE: Engine.delete,
    Kind.HISTORY_INSTANCE: Engine.history,
    Kind.HISTORY_TYPE: Engine.history,
    Kind.HISTORY_SYSTEM: Engine.history,
    Kind.SEARCH_TYPE: Engine.search_interaction,
    Kind.SEARCH_SYSTEM: Engine.search_interaction,
    Kind.CAPABILITIES: Engine.capabilities_interaction,
    Kind.OPERATION: Engine.operation,
}


def _checked(resource: Any, type_: str | None) -> dict[str, Any]:
    if resource is None:
        raise bad_request("A resource body is required")
    check_resource(resource, type_)
    return resource


def _check_if_match(current: Current | None, if_match: str | None, type_: str, id_: str) -> None:
    if if_match is None:
        return
    if current is None or current.deleted:
        raise precondition_failed(f"If-Match: {type_}/{id_} does not exist")
    if if_match != str(current.version):
        raise precondition_failed(
            f"If-Match: version {if_match} is not the current version {current.version} "
            f"of {type_}/{id_}"
        )


def _gone(stored: StoredVersion) -> FhirError:
    return gone(f"{stored.type}/{stored.id} was deleted (version {stored.version})")


def _info(text_: str) -> Issue:
    return Issue("informational", text_, severity="information")


def _outcome(
    status: int, stored: StoredVersion, with_body: bool = True, issues: list[Issue] | None = None
) -> Outcome:
    return Outcome(
        status,
        body=stored.body if with_body else None,
        type=stored.type,
        id=stored.id,
        version=stored.version,
        last_updated=stored.last_updated,
        issues=issues or [],
    )
