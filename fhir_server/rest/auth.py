"""Authentication endpoints, public by nature: SMART discovery
(`/.well-known/smart-configuration`), the server's public keys (`/auth/jwks`) and the
client-credentials token endpoint (`/auth/token`, RFC 6749 §4.4 with SMART Backend Services'
`private_key_jwt`) for the system clients of FHIR_AUTH_CLIENTS.

When FHIR_AUTH_JWKS names another issuer (Pro Santé Connect), the server issues nothing: the
key and token endpoints answer 404 and discovery names that issuer only.
"""

from __future__ import annotations

import base64
import logging
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from fhir_server.errors import not_found
from fhir_server.rest.negotiation import base_url, media_type, read_body
from fhir_server.rest.threads import in_thread
from fhir_server.security.clients import (
    ASSERTION_ALGORITHMS,
    ASSERTION_TYPE,
    AUTH_METHODS,
    CLIENT_SECRET_BASIC,
    CLIENT_SECRET_POST,
    ClientRegistry,
    InvalidClient,
    SystemClient,
    granted_scope,
)
from fhir_server.security.tokens import LocalIssuer, is_jwks_url

log = logging.getLogger(__name__)

router = APIRouter()

JWKS_PATH = "/auth/jwks"
TOKEN_PATH = "/auth/token"
FORM = "application/x-www-form-urlencoded"
_MAX_FORM_BYTES = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_SCOPES_SUPPORTED = ["system/*.cruds", "user/*.cruds", "patient/*.cruds"]
_PERMISSIONS = ["permission-v1", "permission-v2", "permission-user", "permission-patient"]
_CLIENT_CAPABILITIES = ["client-confidential-symmetric", "client-confidential-asymmetric"]


@dataclass(frozen=True)
class TokenService:
    """The issuer and the registered clients of one application, made on first use."""

    issuer: LocalIssuer
    clients: ClientRegistry


_making = threading.Lock()


def token_service(request: Request) -> TokenService:
    # One registry per application: its memory of used assertions must not be split.
    state = request.app.state
    with _making:
        if getattr(state, "token_service", None) is None:
            settings = state.server.settings
            state.token_service = TokenService(
                LocalIssuer(settings), ClientRegistry.load(settings.auth_clients)
            )
    return state.token_service


class TokenError(Exception):
    """An RFC 6749 §5.2 error of the token endpoint."""

    def __init__(self, error: str, description: str, status: int = 400, basic: bool = False):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.basic = basic  # the client tried HTTP Basic: 401 with a Basic challenge

    def response(self) -> JSONResponse:
        headers = dict(_NO_STORE)
        if self.basic:
            headers["WWW-Authenticate"] = 'Basic realm="cpts-fhir"'
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=401 if self.basic else self.status,
            headers=headers,
        )


@router.get("/.well-known/smart-configuration", include_in_schema=False)
async def smart_configuration(request: Request) -> JSONResponse:
    """SMART App Launch 2.x discovery, stating only what this server does: it verifies tokens
    (v1 and v2 scopes, user, patient and system contexts) and, as its own issuer, grants
    client credentials; it has no authorization endpoint, hence no response type."""
    settings = request.app.state.server.settings
    base = base_url(request)
    local = settings.auth_jwks is None
    config: dict[str, Any] = {"issuer": settings.auth_issuer}
    if local:
        config |= {
            "jwks_uri": f"{base}{JWKS_PATH}",
            "token_endpoint": f"{base}{TOKEN_PATH}",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "token_endpoint_auth_signing_alg_values_supported": sorted(ASSERTION_ALGORITHMS),
        }
    elif is_jwks_url(settings.auth_jwks):
        config["jwks_uri"] = settings.auth_jwks
    config |= {
        "scopes_supported": _SCOPES_SUPPORTED,
        "response_types_supported": [],
        "capabilities": (_CLIENT_CAPABILITIES if local else []) + _PERMISSIONS,
    }
    return JSONResponse(config)


@router.get(JWKS_PATH, include_in_schema=False)
async def jwks(request: Request) -> JSONResponse:
    """The public key that signs this server's tokens."""
    service = token_service(request)
    if not service.issuer.active:
        raise not_found("This server issues no tokens: its tokens' keys are FHIR_AUTH_JWKS")
    return JSONResponse(await in_thread(service.issuer.jwks))


@router.post(TOKEN_PATH, include_in_schema=False)
async def token(request: Request) -> JSONResponse:
    """A bearer token for a system client (client_credentials grant)."""
    service = token_service(request)
    if not service.issuer.active:
        raise not_found("This server issues no tokens: ask the issuer of FHIR_AUTH_JWKS")
    try:
        form = await _form(request)
        endpoint = f"{base_url(request)}{TOKEN_PATH}"
        return await in_thread(_grant, service, request, form, endpoint)
    except TokenError as refusal:
        log.info("token refused: %s", refusal.error)
        return refusal.response()


async def _form(request: Request) -> dict[str, str]:
    """The form parameters, each at most once (RFC 6749 §3.2); empty ones count as absent."""
    if media_type(request.headers.get("content-type", "")) != FORM:
        raise TokenError("invalid_request", f"The request body must be {FORM}")
    body = await read_body(request, _MAX_FORM_BYTES)
    try:
        pairs = parse_qsl(body.decode("utf-8"), max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        raise TokenError("invalid_request", "The form is malformed") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise TokenError("invalid_request", f"The parameter {name} is repeated")
        form[name] = value
    return form


def _grant(
    service: TokenService, request: Request, form: dict[str, str], endpoint: str
) -> JSONResponse:
    grant_type = form.get("grant_type")
    if grant_type is None:
        raise TokenError("invalid_request", "grant_type is required")
    if grant_type != "client_credentials":
        raise TokenError("unsupported_grant_type", "Only client_credentials is granted here")
    client = _authenticate(service.clients, request.headers.get("authorization"), form, endpoint)
    scope = granted_scope(client, form.get("scope"))
    if not scope:
        raise TokenError("invalid_scope", "None of the requested scopes is allowed this client")
    settings = service.issuer.settings
    access_token = service.issuer.issue(
        subject=client.client_id, roles=client.roles, scope=scope, client_id=client.client_id
    )
    log.info("token issued to system client %s", client.client_id)
    return JSONResponse(
        {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": settings.auth_token_lifetime,
            "scope": scope,
        },
        headers=_NO_STORE,
    )


def _authenticate(
    clients: ClientRegistry, authorization: str | None, form: dict[str, str], endpoint: str
) -> SystemClient:
    """The client, by the one authentication method it used (RFC 6749 §2.3)."""
    assertion = form.get("client_assertion")
    used = [authorization is not None, "client_secret" in form, assertion is not None]
    if sum(used) > 1:
        raise TokenError("invalid_request", "Use exactly one client authentication method")
    if assertion is not None and form.get("client_assertion_type") != ASSERTION_TYPE:
        raise TokenError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
    try:
        if authorization is not None:
            client_id, secret = _basic(authorization)
            return clients.authenticate_secret(client_id, secret, CLIENT_SECRET_BASIC)
        if assertion is not None:
            return clients.authenticate_assertion(assertion, endpoint, form.get("client_id"))
        if "client_secret" in form and "client_id" in form:
            return clients.authenticate_secret(
                form["client_id"], form["client_secret"], CLIENT_SECRET_POST
            )
        raise InvalidClient("The client did not authenticate")
    except InvalidClient as error:
        raise TokenError("invalid_client", str(error), basic=authorization is not None) from None


def _basic(authorization: str) -> tuple[str, str]:
    """Client id and secret of `Authorization: Basic`, each form-encoded (RFC 6749 §2.3.1)."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient("The Authorization header must hold Basic client credentials")
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError alike
        raise InvalidClient("Malformed Basic credentials") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise InvalidClient("Malformed Basic credentials")
    return unquote_plus(client_id), unquote_plus(secret)
