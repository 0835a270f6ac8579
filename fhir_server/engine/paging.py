"""Opaque page tokens for the `next`/`previous` links of history and search Bundles.

A token is a keyset position (not an offset), so pages stay right while data changes."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.errors import bad_request

PAGE_PARAM = "_page"


def encode(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode(token: str) -> dict[str, Any]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        raise bad_request(f"Invalid {PAGE_PARAM} token") from None
    if not isinstance(value, dict):
        raise bad_request(f"Invalid {PAGE_PARAM} token")
    return value


def url(base: str, path: str, params: list[tuple[str, str]]) -> str:
    target = f"{base}/{path}" if path else base
    query = urlencode(params)
    return f"{target}?{query}" if query else target
