"""The FastAPI application: FHIR routes, and every error rendered as an OperationOutcome."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server import __version__, collector
from fhir_server.errors import FhirError
from fhir_server.plugins import ROUTES_GROUP, registrations
from fhir_server.rest import auth
from fhir_server.rest.authentication import Unauthenticated
from fhir_server.rest.negotiation import error_response
from fhir_server.rest.routes import public, routes
from fhir_server.security.tokens import TokenVerifier
from fhir_server.server import Server
from fhir_server.settings import Settings, get_settings

log = logging.getLogger(__name__)
access_log = logging.getLogger("fhir_server.access")

_HTTP_ISSUES = {404: "not-found", 405: "not-supported", 413: "too-costly"}


def create_app(settings: Settings | None = None, server: Server | None = None) -> FastAPI:
    """The ASGI app. A `server` given here is shared (tests, several doors in one process)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = app.state.server is None
        if owned:
            app.state.server = Server(settings or get_settings())
            if app.state.server.settings.security_enabled:  # a bad key setting fails here
                app.state.token_verifier = TokenVerifier(app.state.server.settings)
            if app.state.server.settings.outbox_in_process:
                app.state.server.start_outbox_worker()
            collector.settle()
        yield
        if owned:
            app.state.server.close()

    app = FastAPI(
        title="CPTS FHIR server",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(AccessLog)
    app.state.server = server
    # On the application's own router, in this order (/{type}/{id} would take the discovery
    # and auth paths): an included router is matched twice a request, at every request.
    app.router.routes.extend([*public.routes, *auth.router.routes, *routes])
    for register in registrations(ROUTES_GROUP):
        register(app)

    @app.exception_handler(FhirError)
    async def fhir_error(request: Request, exc: FhirError) -> Response:
        response = error_response(request, exc)
        if isinstance(exc, Unauthenticated):
            response.headers["WWW-Authenticate"] = exc.challenge
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        issue = _HTTP_ISSUES.get(exc.status_code, "processing")
        detail = {
            404: f"No FHIR endpoint at {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }
        return error_response(
            request,
            FhirError.of(exc.status_code, issue, detail.get(exc.status_code, str(exc.detail))),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, FhirError.of(400, "invalid", str(exc)))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Log the failure's type and place only: messages may quote patient data.
        log.error(
            "internal error on %s %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            exc_info=(type(exc), None, exc.__traceback__),
        )
        return error_response(request, FhirError.of(500, "exception", "Internal server error"))

    return app


class AccessLog:
    """One line per request with the route template and resource type, never the URL itself:
    ids and search parameters (names, INS) are patient data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "?")
            kind = scope.get("path_params", {}).get("type", "")
            access_log.info(
                "%s %s %s %d %.1fms",
                scope["method"],
                route,
                kind,
                status,
                (time.perf_counter() - start) * 1000,
            )
