"""Who is calling: the bearer token of a request, verified into a `Principal` (RFC 6750).

A request without a valid token is refused with 401 and a `WWW-Authenticate` challenge before
anything is read; only the discovery documents (`/metadata`,
`/.well-known/smart-configuration`, `/auth/jwks`) and the token endpoint (`/auth/token`) are
public. When the issuer's keys cannot be fetched the server, not the token, is at fault: 503.
"""

from __future__ import annotations

from dataclasses import replace

from fastapi import Request

from fhir_server.errors import FhirError, Issue
from fhir_server.rest.threads import in_thread
from fhir_server.security.policy import record_refused_token
from fhir_server.security.principal import Principal
from fhir_server.security.tokens import (
    InvalidToken,
    KeysUnavailable,
    StaticKeys,
    TokenVerifier,
)

REALM = "cpts-fhir"


class Unauthenticated(FhirError):
    """401: no token, or one that does not verify."""

    def __init__(self, description: str, error: str | None = "invalid_token") -> None:
        super().__init__(401, [Issue("login", description)])
        challenge = f'Bearer realm="{REALM}"'
        if error:  # RFC 6750 §3.1: no error code when the request carried no token at all
            challenge += f', error="{error}", error_description="{_quoted(description)}"'
        self.challenge = challenge


async def authenticate(request: Request) -> None:
    """FastAPI dependency of the protected routes: `request.state.principal`."""
    request.state.principal = await principal(request)


async def principal(request: Request) -> Principal | None:
    """The caller of `request`; None when the server runs without security. A refused token is
    recorded in the audit trail before the 401."""
    server = request.app.state.server
    if not server.settings.security_enabled:
        return None
    try:
        return await _verified(request)
    except Unauthenticated as refusal:
        address = request.client.host if request.client else None
        await in_thread(record_refused_token, server.engine, address, str(refusal))
        raise


async def _verified(request: Request) -> Principal:
    """Verified on the event loop (a signature check is a fraction of a millisecond, less than
    a hop to a worker thread, and a token verified before is not checked again), except when
    the keys may have to be fetched from a JWKS URL."""

    server = request.app.state.server
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthenticated("This server needs a bearer token (Authorization header)", None)
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("The Authorization header must be: Bearer <token>", "invalid_request")
    verifier = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        verifier = request.app.state.token_verifier = TokenVerifier(server.settings)
    try:
        token = token.strip()
        caller = verifier.known(token)
        if caller is None and isinstance(verifier.keys, StaticKeys):
            caller = verifier.verify(token)
        elif caller is None:
            caller = await in_thread(verifier.verify, token)

    except KeysUnavailable as exc:  # a client must not throw away a token that may be good
        raise FhirError.of(503, "transient", str(exc)) from None
    except InvalidToken as exc:
        raise Unauthenticated(str(exc)) from None
    return replace(caller, address=request.client.host if request.client else None)


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "'")
