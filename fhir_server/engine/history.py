"""The history interactions (instance, type, system): Bundles of type `history`, newest
version first, with `_since`, `_count` and keyset paging."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from fhir_server.engine import paging
from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.engine.unit_of_work import UnitOfWork
from fhir_server.engine.versioning import instant
from fhir_server.errors import bad_request, not_found
from fhir_server.storage.repository import HistoryCursor, StoredVersion

if TYPE_CHECKING:
    from fhir_server.engine.engine import Engine

_UNSUPPORTED = {"_at", "_list"}


def parse_since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"_since must be a FHIR instant, got {value!r}", "_since") from None
    if moment.tzinfo is None:
        raise bad_request("_since must carry a time zone", "_since")
    return moment


def page_size(engine: Engine, params: list[tuple[str, str]]) -> int:
    """`_count`, bounded by the configured maximum."""
    raw = next((v for k, v in params if k == "_count"), None)
    if raw is None:
        return engine.settings.default_page_size
    if not raw.isdigit():
        raise bad_request(f"_count must be a non-negative integer, got {raw!r}", "_count")
    return min(int(raw), engine.settings.max_page_size)


def history_bundle(
    engine: Engine, uow: UnitOfWork, ix: Interaction, ctx: Context
) -> tuple[dict, list[StoredVersion]]:
    """The history Bundle, and the versions it holds."""
    since: datetime | None = None
    token: dict[str, Any] | None = None
    for name, value in ix.params:
        if name == "_since":
            since = parse_since(value)
        elif name == paging.PAGE_PARAM:
            token = paging.decode(value)
        elif name in _UNSUPPORTED:
            raise bad_request(f"History parameter {name} is not supported", name)
    count = page_size(engine, ix.params)
    if ix.kind is Kind.HISTORY_INSTANCE and uow.repository.current(ix.type, ix.id) is None:
        raise not_found(f"{ix.type}/{ix.id} is not known")

    until = token["until"] if token else uow.repository.latest_version_pk()
    cursor = HistoryCursor(datetime.fromisoformat(token["at"]), token["pk"]) if token else None
    newer = bool(token and token.get("newer"))
    rows = uow.repository.history(ix.type, ix.id, since, count + 1, cursor, newer, until)
    more = len(rows) > count
    if more:
        rows = rows[1:] if newer else rows[:count]

    path = "/".join(p for p in (ix.type, ix.id, "_history") if p)
    base_params = [(k, v) for k, v in ix.params if k != paging.PAGE_PARAM]
    links = [{"relation": "self", "url": paging.url(ctx.base_url, path, ix.params)}]
    if rows and (more or newer):  # older versions remain
        links.append(_link("next", ctx, path, base_params, rows[-1], until, newer=False))
    if rows and token and (more or not newer):  # newer versions remain
        links.append(_link("previous", ctx, path, base_params, rows[0], until, newer=True))

    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history"}
    if ix.kind is Kind.HISTORY_INSTANCE and since is None:
        bundle["total"] = uow.repository.current(ix.type, ix.id).version
    bundle["link"] = links
    bundle["entry"] = [_entry(ctx, row) for row in rows]
    return bundle, rows


def _link(
    relation: str,
    ctx: Context,
    path: str,
    params: list[tuple[str, str]],
    row: StoredVersion,
    until: int,
    newer: bool,
) -> dict[str, str]:
    position = {"at": row.last_updated.isoformat(), "pk": row.pk, "until": until}
    if newer:
        position["newer"] = True
    token = paging.encode(position)
    return {
        "relation": relation,
        "url": paging.url(ctx.base_url, path, [*params, (paging.PAGE_PARAM, token)]),
    }


_STATUS = {"POST": "201 Created", "DELETE": "204 No Content"}


def _entry(ctx: Context, row: StoredVersion) -> dict[str, Any]:
    entry: dict[str, Any] = {"fullUrl": f"{ctx.base_url}/{row.type}/{row.id}"}
    if row.body is not None:
        entry["resource"] = orjson.Fragment(row.body)
    url = row.type if row.method == "POST" else f"{row.type}/{row.id}"
    status = _STATUS.get(row.method, "201 Created" if row.version == 1 else "200 OK")
    entry["request"] = {"method": row.method, "url": url}
    entry["response"] = {
        "status": status,
        "etag": f'W/"{row.version}"',
        "lastModified": instant(row.last_updated),
    }
    return entry
