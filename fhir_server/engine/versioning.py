"""Version stamps: meta.versionId and meta.lastUpdated, and the content hash that tells an
update that changes something from one that changes nothing."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from fhir_server.formats.json_format import dumps

_UNSTAMPED_META = ("versionId", "lastUpdated")


def now() -> datetime:
    """The current instant, to the millisecond (the precision FHIR instants are shown with)."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def instant(moment: datetime) -> str:
    """FHIR `instant` text of a UTC datetime, e.g. 2026-11-24T08:00:00.123Z."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def stamp(resource: dict[str, Any], id_: str, version: int, when: datetime) -> dict[str, Any]:
    """The resource as stored: resourceType, id and meta first, meta carrying the version."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = instant(when)
    stamped = {"resourceType": resource["resourceType"], "id": id_, "meta": meta}
    for key, value in resource.items():
        if key not in stamped:
            stamped[key] = value
    return stamped


def content_hash(resource: dict[str, Any]) -> bytes:
    """SHA-256 of the resource without its version stamps, keys sorted."""
    meta = resource.get("meta")
    if meta and any(key in meta for key in _UNSTAMPED_META):
        meta = {k: v for k, v in meta.items() if k not in _UNSTAMPED_META}
        resource = {k: v for k, v in resource.items() if k != "meta"}
        if meta:
            resource["meta"] = meta
    return hashlib.sha256(dumps(resource, sort_keys=True)).digest()


def etag_version(etag: str | None) -> str | None:
    """The version id of an ETag (`W/"3"` → "3"), as If-Match/If-None-Match carry it."""
    return etag.strip().removeprefix("W/").strip('"') if etag else None
