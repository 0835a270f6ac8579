"""Batch and transaction Bundles (http.html#transaction).

A transaction runs in one unit of work: entries are processed DELETE, POST, PUT/PATCH, then
GET/HEAD, after `urn:uuid:` and conditional references between entries have been resolved; the
first failure rolls everything back and is reported with its entry index. A batch runs each
entry in its own unit of work and reports failures entry by entry.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from fhir_server.engine.history import parse_since
from fhir_server.engine.hooks import HookPoint
from fhir_server.engine.interaction import Context, Interaction, Kind, Outcome, PatchFormat
from fhir_server.engine.unit_of_work import UnitOfWork
from fhir_server.engine.versioning import etag_version, instant
from fhir_server.errors import FhirError, Issue, bad_request, operation_outcome
from fhir_server.formats.json_format import loads
from fhir_server.model.structure import check_resource

if TYPE_CHECKING:
    from fhir_server.engine.engine import Engine

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class Entry:
    index: int
    method: str
    interaction: Interaction
    full_url: str | None


def process_bundle(engine: Engine, interaction: Interaction, context: Context) -> Outcome:
    bundle = interaction.resource
    # The envelope only: each entry's resource is validated when its interaction runs.
    check_resource(
        {
            **bundle,
            "entry": [
                {k: v for k, v in e.items() if k != "resource"}
                for e in bundle.get("entry", [])
                if isinstance(e, dict)
            ],
        }
        if bundle.get("entry")
        else bundle,
        "Bundle",
    )
    kind = Kind(bundle.get("type")) if bundle.get("type") in ("batch", "transaction") else None
    if kind is None:
        raise bad_request(
            f"POST to the base accepts batch or transaction Bundles, not {bundle.get('type')!r}",
            "Bundle.type",
        )
    interaction.kind = kind
    raw_entries = bundle.get("entry", [])
    if len(raw_entries) > engine.settings.max_transaction_entries:
        raise FhirError.of(
            413,
            "too-costly",
            f"A Bundle may hold at most {engine.settings.max_transaction_entries} entries",
        )
    engine.hooks.run(HookPoint.BEFORE_INTERACTION, context, interaction)
    entries = [_parse_entry(i, e, interaction) for i, e in enumerate(raw_entries)]
    if kind is Kind.TRANSACTION:
        engine.hooks.run(HookPoint.BEFORE_TRANSACTION, context, [e.interaction for e in entries])
        return engine.in_transaction(
            True, context, lambda uow: _transaction(engine, uow, entries, context)
        )
    return _batch(engine, entries, context)


def _transaction(engine: Engine, uow: UnitOfWork, entries: list[Entry], ctx: Context) -> Outcome:
    uow.touched.clear()
    uow.changes.clear()
    _resolve_references(engine, uow, entries, ctx)
    responses: dict[int, dict[str, Any]] = {}
    for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
        before = set(uow.touched)
        try:
            outcome = engine.run(uow, entry.interaction, ctx)
        except FhirError as exc:
            raise _at_entry(exc, entry.index) from None
        key = (outcome.type, outcome.id)
        if entry.method != "GET" and outcome.id and key in before:
            raise bad_request(
                f"Bundle.entry[{entry.index}]: {key[0]}/{key[1]} is changed by "
                "more than one entry of the transaction"
            )
        responses[entry.index] = _response_entry(outcome, entry, ctx)
    return Outcome(200, resource=_response_bundle("transaction-response", responses, entries))


def _batch(engine: Engine, entries: list[Entry], ctx: Context) -> Outcome:
    responses: dict[int, dict[str, Any]] = {}
    for entry in entries:
        ix = entry.interaction
        try:
            engine.hooks.run(HookPoint.BEFORE_TRANSACTION, ctx, [ix])
            outcome = engine.in_transaction(
                engine.writes(ix), ctx, lambda uow, ix=ix: engine.run(uow, ix, ctx)
            )
            responses[entry.index] = _response_entry(outcome, entry, ctx)
        except FhirError as exc:
            responses[entry.index] = {
                "response": {"status": _status_line(exc.status), "outcome": exc.outcome()}
            }
    return Outcome(200, resource=_response_bundle("batch-response", responses, entries))


# -- request entries ------------------------------------------------------------------------------


def _parse_entry(index: int, raw: dict[str, Any], bundle: Interaction) -> Entry:
    where = f"Bundle.entry[{index}]"
    request = raw.get("request")
    if not request:
        raise bad_request(f"{where}: every entry of a {bundle.kind} needs a request", where)
    method = request["method"]
    if method not in _ORDER:
        raise bad_request(f"{where}: unsupported method {method!r}", f"{where}.request.method")
    ix = _interaction_for(method, request["url"], where)
    ix.prefer_return = bundle.prefer_return
    ix.method = method
    ix.if_match = etag_version(request.get("ifMatch"))
    ix.if_none_match = etag_version(request.get("ifNoneMatch"))
    if request.get("ifModifiedSince"):
        ix.if_modified_since = parse_since(request["ifModifiedSince"])
    if request.get("ifNoneExist"):
        ix.if_none_exist = parse_qsl(request["ifNoneExist"].lstrip("?"), keep_blank_values=True)
    resource = raw.get("resource")
    if ix.kind is Kind.OPERATION:
        ix.resource = resource
    elif method in ("POST", "PUT"):
        if resource is None:
            raise bad_request(f"{where}: a {method} entry needs a resource", where)
        ix.resource = resource
    elif method == "PATCH":
        ix.patch, ix.patch_format = _patch_of(resource, where)
    return Entry(index, method, ix, raw.get("fullUrl"))


def _interaction_for(method: str, url: str, where: str) -> Interaction:
    """Route an entry's relative URL (`Patient/1`, `Patient?x=y`, ...) to an interaction."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    segments = [s for s in parts.path.strip("/").split("/") if s]
    if parts.scheme:  # absolute URL on this server: keep the trailing type/id/... segments
        segments = segments[-4:] if "_history" in segments else segments[-2:]
    n = len(segments)
    type_ = segments[0] if n else None
    if n and n <= 3 and segments[-1].startswith("$") and method in ("GET", "POST"):
        return Interaction(
            Kind.OPERATION,
            type_ if n > 1 else None,
            segments[1] if n == 3 else None,
            operation=segments[-1][1:],
            params=params,
        )
    if method == "POST" and n == 1:
        return Interaction(Kind.CREATE, type_)
    if method == "POST" and n == 2 and segments[1] == "_search":
        return Interaction(Kind.SEARCH_TYPE, type_, params=params)
    if method in ("PUT", "DELETE", "PATCH") and n in (1, 2):
        kind = {"PUT": Kind.UPDATE, "DELETE": Kind.DELETE, "PATCH": Kind.PATCH}[method]
        if n == 1 and not params:
            raise bad_request(
                f"{where}: {method} {url} needs an id or search criteria", f"{where}.request.url"
            )
        return Interaction(kind, type_, segments[1] if n == 2 else None, params=params)
    if method in ("GET", "HEAD"):
        if n == 0:
            return Interaction(Kind.SEARCH_SYSTEM, params=params)
        if segments == ["metadata"]:
            return Interaction(Kind.CAPABILITIES)
        if segments == ["_history"]:
            return Interaction(Kind.HISTORY_SYSTEM, params=params)
        if n == 1:
            return Interaction(Kind.SEARCH_TYPE, type_, params=params)
        if n == 2 and segments[1] == "_history":
            return Interaction(Kind.HISTORY_TYPE, type_, params=params)
        if n == 2:
            return Interaction(Kind.READ, type_, segments[1])
        if n == 3 and segments[2] == "_history":
            return Interaction(Kind.HISTORY_INSTANCE, type_, segments[1], params=params)
        if n == 4 and segments[2] == "_history":
            return Interaction(Kind.VREAD, type_, segments[1], version=segments[3])
    raise bad_request(f"{where}: cannot process {method} {url}", f"{where}.request.url")


def _patch_of(resource: Any, where: str) -> tuple[Any, PatchFormat]:
    if not isinstance(resource, dict):
        raise bad_request(f"{where}: a PATCH entry needs a Parameters or Binary resource", where)
    if resource.get("resourceType") == "Parameters":
        return resource, PatchFormat.FHIRPATH_PATCH
    if resource.get("resourceType") == "Binary" and resource.get("contentType", "").startswith(
        "application/json-patch+json"
    ):
        return loads(base64.b64decode(resource.get("data", ""))), PatchFormat.JSON_PATCH
    raise bad_request(
        f"{where}: a PATCH entry needs a FHIRPath Patch Parameters or a Binary "
        "holding a JSON Patch",
        f"{where}.resource",
    )


# -- references between entries -------------------------------------------------------------------


def _resolve_references(
    engine: Engine, uow: UnitOfWork, entries: list[Entry], ctx: Context
) -> None:
    """Give every created entry its id now, then point references at the ids."""
    ids: dict[str, str] = {}
    for entry in entries:
        ix = entry.interaction
        target_id: str | None = None
        if ix.kind is Kind.CREATE:
            existing = (
                engine.matches(uow, ix.type, ix.if_none_exist, "If-None-Exist", ctx)
                if ix.if_none_exist is not None
                else []
            )
            target_id = existing[0] if existing else str(uuid.uuid4())
            ix.id = target_id
        elif ix.kind is Kind.UPDATE:
            if ix.id is None:
                found = engine.matches(uow, ix.type, ix.params, "conditional update", ctx)
                target_id = found[0] if found else (ix.resource.get("id") or str(uuid.uuid4()))
                ix.id, ix.params = target_id, []
                if found and ix.resource.get("id") not in (None, target_id):
                    raise bad_request(
                        f"Bundle.entry[{entry.index}]: resource id does not match "
                        f"{ix.type}/{target_id}"
                    )
                ix.resource = {**ix.resource, "id": target_id}
            else:
                target_id = ix.id
        if target_id and entry.full_url:
            ids[entry.full_url] = f"{ix.type}/{target_id}"
    cache: dict[str, str] = {}
    for entry in entries:
        ix = entry.interaction
        if ix.resource is not None:
            ix.resource = _rewrite(engine, uow, ix.resource, ids, cache, entry.index, ctx)
        if ix.patch_format is PatchFormat.FHIRPATH_PATCH:
            ix.patch = _rewrite(engine, uow, ix.patch, ids, cache, entry.index, ctx)


def _rewrite(
    engine: Engine,
    uow: UnitOfWork,
    value: Any,
    ids: dict[str, str],
    cache: dict[str, str],
    index: int,
    ctx: Context,
) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and "?" in item and item not in ids:
                out[key] = _conditional_reference(engine, uow, item, cache, index, ctx)
            else:
                out[key] = _rewrite(engine, uow, item, ids, cache, index, ctx)
        return out
    if isinstance(value, list):
        return [_rewrite(engine, uow, item, ids, cache, index, ctx) for item in value]
    if isinstance(value, str) and value in ids:
        return ids[value]
    return value


def _conditional_reference(
    engine: Engine,
    uow: UnitOfWork,
    reference: str,
    cache: dict[str, str],
    index: int,
    ctx: Context,
) -> str:
    if reference not in cache:
        type_, _, query = reference.partition("?")
        params = parse_qsl(query, keep_blank_values=True)
        found = engine.search.match(uow, type_, params, limit=2, visibility=ctx.visibility)
        if len(found) != 1:
            raise FhirError.of(
                412,
                "not-found" if not found else "multiple-matches",
                f"Bundle.entry[{index}]: conditional reference {reference} matches "
                f"{'no' if not found else 'several'} resources",
            )
        cache[reference] = f"{type_}/{found[0]}"
    return cache[reference]


# -- responses ------------------------------------------------------------------------------------


def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


def _response_entry(outcome: Outcome, entry: Entry, ctx: Context) -> dict[str, Any]:
    response: dict[str, Any] = {"status": _status_line(outcome.status)}
    result: dict[str, Any] = {}
    if outcome.type and outcome.id:
        result["fullUrl"] = f"{ctx.base_url}/{outcome.type}/{outcome.id}"
    if outcome.version is not None:
        if entry.method in ("POST", "PUT", "PATCH") and outcome.location:
            response["location"] = outcome.location
        response["etag"] = f'W/"{outcome.version}"'
        response["lastModified"] = instant(outcome.last_updated)
    prefer = entry.interaction.prefer_return
    if entry.method in ("GET", "HEAD") or prefer == "representation":
        if outcome.body is not None:
            result["resource"] = orjson.Fragment(outcome.body)
        elif outcome.resource is not None:
            result["resource"] = outcome.resource
    if prefer == "OperationOutcome" and entry.method not in ("GET", "HEAD"):
        response["outcome"] = operation_outcome(
            outcome.issues or [Issue("informational", "All OK", severity="information")]
        )
    result["response"] = response
    return result


def _response_bundle(
    type_: str, responses: dict[int, dict[str, Any]], entries: list[Entry]
) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": type_, "entry": [responses[e.index] for e in entries]}


def _at_entry(error: FhirError, index: int) -> FhirError:
    prefix = f"Bundle.entry[{index}]"
    issues = []
    for issue in error.issues:
        expression = issue.expression
        if expression and not expression.startswith("Bundle.entry"):
            rest = expression.partition(".")[2]
            expression = f"{prefix}.resource" + (f".{rest}" if rest else "")
        issues.append(
            Issue(
                issue.code, f"{prefix}: {issue.diagnostics}", issue.severity, expression or prefix
            )
        )
    return FhirError(error.status, issues)
