"""FHIR RESTful API routes (R4 http.html). Each route only translates: HTTP request →
`Interaction`, engine, `Outcome` → HTTP response.

The interactions are plain Starlette routes, authenticated by their wrapper. Their paths are
generic (`/{type}/{id}`) and each handler reads the request itself: FastAPI's parameter
validation and dependency injection would have nothing to check, and cost a tenth of a
millisecond a request (docs/performance.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.routing import Route

from fhir_server.engine.interaction import Context, Interaction, Kind, PatchFormat, Return
from fhir_server.errors import FhirError, bad_request
from fhir_server.rest import negotiation as n
from fhir_server.rest.authentication import authenticate
from fhir_server.rest.threads import in_thread

public = APIRouter()  # discovery: no token needed
routes: list[Route] = []  # the FHIR interactions, in matching order

Handler = Callable[..., Awaitable[Response]]


def _route(path: str, method: str) -> Callable[[Handler], Handler]:
    """Register `handler(request, **path_params)` for `method` on `path`, behind a token."""

    def register(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            request.scope["route"] = route  # the access log names the route, not the URL
            await authenticate(request)
            return await handler(request, **request.path_params)

        route = Route(path, endpoint, methods=[method], name=handler.__name__)
        routes.append(route)
        return handler

    return register


def _params(request: Request) -> list[tuple[str, str]]:
    return [
        (k, v) for k, v in request.query_params.multi_items() if k not in ("_format", "_pretty")
    ]


async def _execute(request: Request, interaction: Interaction) -> Response:
    fmt = n.response_format(request)
    prefer = n.prefer_return(request)
    interaction.prefer_return = prefer
    interaction.strict = n.prefer_strict(request)
    server = request.app.state.server
    caller = getattr(request.state, "principal", None)
    context = Context(base_url=n.base_url(request), source="rest", principal=caller)
    outcome = await in_thread(server.engine.execute, interaction, context)
    # Prefer shapes the response of a write; a batch or transaction applies it to its entries.
    return n.render(
        request, outcome, fmt, prefer if interaction.is_write else Return.REPRESENTATION
    )


async def _body(request: Request) -> bytes:
    return await n.read_body(request, request.app.state.server.settings.max_body_bytes)


async def _resource_body(request: Request) -> dict:
    body = await _body(request)
    resource = n.parse_body(body, request.headers.get("content-type"))
    if not isinstance(resource, dict):
        raise bad_request("The body must be a FHIR resource (a JSON object)")
    return resource


@public.get("/metadata")
async def capabilities(request: Request) -> Response:
    return await _execute(request, Interaction(Kind.CAPABILITIES))


@public.api_route("/metadata", methods=["POST", "PUT", "PATCH", "DELETE"])
async def capabilities_read_only(request: Request) -> Response:
    raise FhirError.of(405, "not-supported", f"{request.method} is not allowed on /metadata")


@_route("/", "POST")
async def batch_or_transaction(request: Request) -> Response:
    bundle = await _resource_body(request)
    if bundle.get("resourceType") != "Bundle":
        raise bad_request("POST to the base accepts a batch or transaction Bundle")
    kind = Kind.TRANSACTION if bundle.get("type") == "transaction" else Kind.BATCH
    return await _execute(request, Interaction(kind, resource=bundle, method="POST"))


@_route("/", "GET")
async def search_system(request: Request) -> Response:
    return await _execute(request, Interaction(Kind.SEARCH_SYSTEM, params=_params(request)))


@_route("/_history", "GET")
async def history_system(request: Request) -> Response:
    return await _execute(request, Interaction(Kind.HISTORY_SYSTEM, params=_params(request)))


@_route("/{type}/_history", "GET")
async def history_type(request: Request, type: str) -> Response:
    return await _execute(request, Interaction(Kind.HISTORY_TYPE, type, params=_params(request)))


@_route("/{type}/_search", "POST")
async def search_post(request: Request, type: str) -> Response:
    """POST search: criteria from the form body and the URL together (search.html#Introduction)."""
    body = await _body(request)
    if n.media_type(request.headers.get("content-type", "")) != "application/x-www-form-urlencoded":
        raise FhirError.of(
            415, "not-supported", "POST _search takes application/x-www-form-urlencoded"
        )
    params = _params(request) + parse_qsl(body.decode(), keep_blank_values=True)
    return await _execute(request, Interaction(Kind.SEARCH_TYPE, type, params=params))


@_route("/{type}/{id}/_history", "GET")
async def history_instance(request: Request, type: str, id: str) -> Response:
    return await _execute(
        request, Interaction(Kind.HISTORY_INSTANCE, type, id, params=_params(request))
    )


@_route("/{type}/{id}/_history/{version}", "GET")
async def vread(request: Request, type: str, id: str, version: str) -> Response:
    return await _execute(request, Interaction(Kind.VREAD, type, id, version=version))


@_route("/{compartment}/{id}/{type}", "GET")
async def search_compartment(request: Request, compartment: str, id: str, type: str) -> Response:
    if type.startswith("$"):
        return await _operation(request, compartment, id, type)
    return await _execute(
        request,
        Interaction(Kind.SEARCH_TYPE, type, params=_params(request), compartment=(compartment, id)),
    )


@_route("/{type}/{id}/{operation}", "POST")
async def operation_instance(request: Request, type: str, id: str, operation: str) -> Response:
    return await _operation(request, type, id, operation)


async def _operation(request: Request, type: str | None, id: str | None, name: str) -> Response:
    """`[base]/$op`, `[base]/Type/$op`, `[base]/Type/id/$op`: GET takes the parameters from
    the URL, POST from a Parameters body (or a resource, for operations that take one)."""
    if not name.startswith("$"):
        raise FhirError.of(
            405, "not-supported", f"{request.method} is not allowed on {request.url.path}"
        )
    body = await _body(request)
    resource = n.parse_body(body, request.headers.get("content-type")) if body.strip() else None
    if request.method == "GET" and resource is not None:
        raise bad_request("GET operations take their parameters from the URL")
    return await _execute(
        request,
        Interaction(
            Kind.OPERATION,
            type,
            id,
            operation=name[1:],
            resource=resource,
            params=_params(request),
            method=request.method,
        ),
    )


@_route("/{type}", "GET")
async def search_type(request: Request, type: str) -> Response:
    if type.startswith("$"):
        return await _operation(request, None, None, type)
    return await _execute(request, Interaction(Kind.SEARCH_TYPE, type, params=_params(request)))


@_route("/{type}", "POST")
async def create(request: Request, type: str) -> Response:
    if type.startswith("$"):
        return await _operation(request, None, None, type)
    ix = Interaction(Kind.CREATE, type, resource=await _resource_body(request), method="POST")
    if_none_exist = request.headers.get("if-none-exist")
    if if_none_exist is not None:
        ix.if_none_exist = parse_qsl(if_none_exist.lstrip("?"), keep_blank_values=True)
    return await _execute(request, ix)


@_route("/{type}", "PUT")
async def update_conditional(request: Request, type: str) -> Response:
    return await _execute(
        request,
        Interaction(
            Kind.UPDATE,
            type,
            resource=await _resource_body(request),
            params=_params(request),
            if_match=n.if_match(request),
            method="PUT",
        ),
    )


@_route("/{type}", "DELETE")
async def delete_conditional(request: Request, type: str) -> Response:
    return await _execute(
        request,
        Interaction(
            Kind.DELETE,
            type,
            params=_params(request),
            if_match=n.if_match(request),
            method="DELETE",
        ),
    )


@_route("/{type}", "PATCH")
async def patch_conditional(request: Request, type: str) -> Response:
    ix = await _patch_interaction(request, type, None)
    ix.params = _params(request)
    return await _execute(request, ix)


@_route("/{type}/{operation}", "POST")
async def operation_type(request: Request, type: str, operation: str) -> Response:
    return await _operation(request, type, None, operation)


@_route("/{type}/{id}", "GET")
async def read(request: Request, type: str, id: str) -> Response:
    if id.startswith("$"):
        return await _operation(request, type, None, id)
    return await _execute(
        request,
        Interaction(
            Kind.READ,
            type,
            id,
            if_none_match=n.if_none_match(request),
            if_modified_since=n.if_modified_since(request),
        ),
    )


@_route("/{type}/{id}", "PUT")
async def update(request: Request, type: str, id: str) -> Response:
    return await _execute(
        request,
        Interaction(
            Kind.UPDATE,
            type,
            id,
            resource=await _resource_body(request),
            if_match=n.if_match(request),
            method="PUT",
        ),
    )


@_route("/{type}/{id}", "DELETE")
async def delete(request: Request, type: str, id: str) -> Response:
    return await _execute(
        request, Interaction(Kind.DELETE, type, id, if_match=n.if_match(request), method="DELETE")
    )


@_route("/{type}/{id}", "PATCH")
async def patch(request: Request, type: str, id: str) -> Response:
    return await _execute(request, await _patch_interaction(request, type, id))


async def _patch_interaction(request: Request, type: str, id: str | None) -> Interaction:
    body = await _body(request)
    content_type = request.headers.get("content-type")
    document = n.parse_body(body, content_type, allow_json_patch=True)
    if n.media_type(content_type or "") == n.JSON_PATCH:
        patch_format = PatchFormat.JSON_PATCH
    elif isinstance(document, dict) and document.get("resourceType") == "Parameters":
        patch_format = PatchFormat.FHIRPATH_PATCH
    else:
        raise bad_request(
            "PATCH takes a JSON Patch (application/json-patch+json) or a "
            "FHIRPath Patch Parameters resource"
        )
    return Interaction(
        Kind.PATCH,
        type,
        id,
        patch=document,
        patch_format=patch_format,
        if_match=n.if_match(request),
        method="PATCH",
    )
