"""HTTP ⇄ FHIR translation: request bodies (size limit, media type, JSON or XML), the response
format (`_format`, `Accept`, `_pretty`), `Prefer`, and rendering an `Outcome` with the headers
R4 prescribes (ETag, Last-Modified, Location)."""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from fhir_server.engine.interaction import Outcome, Return
from fhir_server.engine.versioning import etag_version
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.formats.json_format import dumps, loads
from fhir_server.formats.xml_format import parse_xml, to_xml

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
JSON_PATCH = "application/json-patch+json"
_JSON_TYPES = {FHIR_JSON, "application/json", "json", "text/json"}
_XML_TYPES = {FHIR_XML, "application/xml", "text/xml", "xml"}


def base_url(request: Request) -> str:
    """The FHIR base of this request: FHIR_BASE_URL when set, else as the client reached us."""
    configured = request.app.state.server.settings.base_url
    return (configured or str(request.base_url)).rstrip("/")


def media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 beyond `max_bytes` without reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int) -> FhirError:
    return FhirError.of(413, "too-costly", f"The request body exceeds {max_bytes} bytes")


def parse_body(body: bytes, content_type: str | None, allow_json_patch: bool = False) -> Any:
    """A FHIR resource (dict) from JSON or XML; a JSON Patch list when allowed."""
    kind = media_type(content_type) if content_type else FHIR_JSON
    if not body.strip():
        raise FhirError.of(400, "required", "The request has no body")
    if kind in _JSON_TYPES or (allow_json_patch and kind == JSON_PATCH):
        return loads(body)
    if kind in _XML_TYPES:
        return parse_xml(body)
    accepted = sorted(_JSON_TYPES | _XML_TYPES | ({JSON_PATCH} if allow_json_patch else set()))
    raise FhirError.of(
        415, "not-supported", f"Unsupported media type {kind!r}; use one of {', '.join(accepted)}"
    )


def response_format(request: Request) -> str:
    """FHIR_JSON or FHIR_XML, from `_format` first, then `Accept`; JSON by default."""
    requested = request.query_params.get("_format")
    if requested is not None:
        kind = media_type(requested)
        if kind in _JSON_TYPES:
            return FHIR_JSON
        if kind in _XML_TYPES:
            return FHIR_XML
        raise FhirError.of(406, "not-supported", f"Unsupported _format {requested!r}")
    accept = request.headers.get("accept", "")
    best, best_q = FHIR_JSON, -1.0
    for item in accept.split(","):
        kind, _, params = item.partition(";")
        kind = kind.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if kind in _XML_TYPES and q > best_q:
            best, best_q = FHIR_XML, q
        elif (kind in _JSON_TYPES or kind in ("*/*", "application/*")) and q > best_q:
            best, best_q = FHIR_JSON, q
    return best


def _prefer(request: Request, name: str) -> str | None:
    for token in request.headers.get("prefer", "").replace(";", ",").split(","):
        key, _, value = token.strip().partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return None


def prefer_return(request: Request) -> Return:
    value = _prefer(request, "return")
    if value is None:
        return Return.REPRESENTATION
    try:
        return Return(value)
    except ValueError:
        raise FhirError.of(400, "invalid", f"Unsupported Prefer return={value}") from None


def prefer_strict(request: Request) -> bool:
    """`Prefer: handling=strict` (unknown search parameters are errors) or lenient (default)."""
    return _prefer(request, "handling") == "strict"


def if_match(request: Request) -> str | None:
    """The version id of an `If-Match: W/"3"` header."""
    return etag_version(request.headers.get("if-match"))


def if_none_match(request: Request) -> str | None:
    return etag_version(request.headers.get("if-none-match"))


def if_modified_since(request: Request) -> datetime | None:
    value = request.headers.get("if-modified-since")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise FhirError.of(400, "invalid", f"Malformed If-Modified-Since {value!r}") from None


def render(request: Request, outcome: Outcome, fmt: str, prefer: Return | None = None) -> Response:
    """The HTTP response for an outcome: body per Prefer and format, and the version headers."""
    headers: dict[str, str] = {}
    if outcome.version is not None:
        headers["ETag"] = f'W/"{outcome.version}"'
    if outcome.last_updated is not None:
        headers["Last-Modified"] = format_datetime(outcome.last_updated, usegmt=True)
    if outcome.created and outcome.location:
        headers["Location"] = f"{base_url(request)}/{outcome.location}"
    if outcome.status == 304:
        return Response(status_code=304, headers=headers)
    body: Any = None
    if prefer is Return.MINIMAL:
        body = None
    elif prefer is Return.OPERATION_OUTCOME:
        body = operation_outcome(
            outcome.issues or [Issue("informational", "All OK", "information")]
        )
    elif outcome.body is not None:
        body = outcome.body
    elif outcome.resource is not None:
        body = outcome.resource
    elif outcome.issues and outcome.status != 204:
        body = operation_outcome(outcome.issues)
    if body is None:
        return Response(status_code=outcome.status, headers=headers)
    status = 200 if outcome.status == 204 else outcome.status
    return Response(
        serialize(request, body, fmt),
        status_code=status,
        headers=headers,
        media_type=f"{fmt}; charset=utf-8",
    )


def serialize(request: Request, body: bytes | dict[str, Any], fmt: str) -> bytes:
    pretty = request.query_params.get("_pretty") == "true"
    if fmt == FHIR_XML:
        resource = loads(body if isinstance(body, bytes) else dumps(body))
        return to_xml(resource)
    if isinstance(body, bytes):
        return dumps(loads(body), pretty=True) if pretty else body
    return dumps(body, pretty=pretty)


def error_response(request: Request, error: FhirError) -> Response:
    try:
        fmt = response_format(request)
    except FhirError:
        fmt = FHIR_JSON
    return Response(
        serialize(request, error.outcome(), fmt),
        status_code=error.status,
        media_type=f"{fmt}; charset=utf-8",
    )
