"""The system clients allowed the client-credentials grant, and how each proves who it is:
a shared secret (stored only as a salted scrypt hash) or, as SMART Backend Services
prescribe, a JWT assertion signed with its private key.

The registry is the JSON file FHIR_AUTH_CLIENTS, read at start-up:

    {
      "clients": {
        "lab-gateway": {
          "roles": ["hospital"],
          "scope": "system/Observation.cru system/DiagnosticReport.cru",
          "token_endpoint_auth_method": "client_secret_basic",
          "secret_hash": "scrypt$16384$8$1$<salt>$<hash>"
        },
        "pathway-robot": {
          "roles": ["coordinator"],
          "scope": "system/*.cruds",
          "token_endpoint_auth_method": "private_key_jwt",
          "jwks": {"keys": [{"kty": "EC", "crv": "P-384", "kid": "...", "x": "...", "y": "..."}]}
        }
      }
    }

`roles` are role names of `fhir_server.security.principal.ROLES`; `scope` the SMART scopes the
client may be granted; `token_endpoint_auth_method` (RFC 7591) one of client_secret_basic,
client_secret_post, private_key_jwt. A secret client has a `secret_hash`, printed by
`python -m fhir_server client-secret`; a private_key_jwt client has its public `jwks` inline.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from fhir_server.security.principal import ROLES
from fhir_server.security.scopes import PERMISSIONS, Scopes
from fhir_server.security.tokens import LEEWAY, InvalidToken, StaticKeys, decode

CLIENT_SECRET_BASIC = "client_secret_basic"
CLIENT_SECRET_POST = "client_secret_post"
PRIVATE_KEY_JWT = "private_key_jwt"
AUTH_METHODS = (CLIENT_SECRET_BASIC, CLIENT_SECRET_POST, PRIVATE_KEY_JWT)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# SMART Backend Services require RS384 and ES384; the 256-bit forms are common too.
ASSERTION_ALGORITHMS = frozenset({"ES256", "ES384", "RS256", "RS384", "PS256", "PS384"})
ASSERTION_MAX_LIFETIME = 300  # seconds: an assertion's exp is at most five minutes ahead

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1  # 16 MiB and about 50 ms per check


class InvalidClient(Exception):
    """Client authentication failed (OAuth `invalid_client`); the text names no secret."""


def hash_secret(secret: str) -> str:
    """`scrypt$N$r$p$salt$hash` of a client secret, for the clients file."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return "$".join(
        ["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)]
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class SecretHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> SecretHash:
        parts = text.split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError("secret_hash must be scrypt$N$r$p$salt$hash")
        try:
            parsed = cls(
                int(parts[1]),
                int(parts[2]),
                int(parts[3]),
                base64.b64decode(parts[4], validate=True),
                base64.b64decode(parts[5], validate=True),
            )
        except ValueError:
            raise ValueError("secret_hash must be scrypt$N$r$p$salt$hash") from None
        if parsed.n < 2 or parsed.n & (parsed.n - 1) or parsed.r < 1 or parsed.p < 1:
            raise ValueError("secret_hash has impossible scrypt parameters")
        return parsed

    def matches(self, secret: str) -> bool:
        digest = hashlib.scrypt(
            secret.encode(),
            salt=self.salt,
            n=self.n,
            r=self.r,
            p=self.p,
            maxmem=256 * self.n * self.r,
            dklen=len(self.digest),
        )
        return hmac.compare_digest(digest, self.digest)


@dataclass(frozen=True)
class SystemClient:
    client_id: str
    roles: frozenset[str]
    scope: str
    auth_method: str
    secret: SecretHash | None = None
    keys: StaticKeys = field(default_factory=lambda: StaticKeys(()))

    @classmethod
    def of(cls, client_id: str, entry: Any) -> SystemClient:
        """A client from its entry in the clients file; ValueError saying what is wrong."""
        if not isinstance(entry, dict):
            raise ValueError("must be a JSON object")
        roles = entry.get("roles", [])
        if not isinstance(roles, list) or any(role not in ROLES for role in roles):
            raise ValueError(f"roles must be a list of {', '.join(ROLES)}")
        scope = entry.get("scope")
        if not isinstance(scope, str) or not Scopes.parse(scope).grants:
            raise ValueError("scope must hold at least one SMART resource scope")
        method = entry.get("token_endpoint_auth_method")
        if method not in AUTH_METHODS:
            raise ValueError(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
        if method == PRIVATE_KEY_JWT:
            return cls(client_id, frozenset(roles), scope, method, keys=_client_keys(entry))
        secret = entry.get("secret_hash")
        if not isinstance(secret, str):
            raise ValueError(f"{method} needs a secret_hash")
        return cls(client_id, frozenset(roles), scope, method, secret=SecretHash.parse(secret))


def _client_keys(entry: dict[str, Any]) -> StaticKeys:
    keys = StaticKeys.from_jwks(entry.get("jwks"))
    if not any(key.algorithms & ASSERTION_ALGORITHMS for key in keys.keys):
        raise ValueError(f"jwks needs a key for one of {', '.join(sorted(ASSERTION_ALGORITHMS))}")
    return keys


class ClientRegistry:
    """The system clients, and the client assertions already used (in memory, per process:
    with several workers, a replay could reach another one within the assertion's lifetime,
    at most five minutes)."""

    def __init__(self, clients: dict[str, SystemClient]) -> None:
        self.clients = clients
        self._used: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path | None) -> ClientRegistry:
        """The clients of the file FHIR_AUTH_CLIENTS (none when unset); ValueError naming the
        client and the fault when the file is wrong."""
        if path is None:
            return cls({})
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"FHIR_AUTH_CLIENTS {path}: {error}") from None
        entries = document.get("clients") if isinstance(document, dict) else None
        if not isinstance(entries, dict):
            raise ValueError(f"FHIR_AUTH_CLIENTS {path}: needs a `clients` object")
        clients = {}
        for client_id, entry in entries.items():
            try:
                clients[client_id] = SystemClient.of(client_id, entry)
            except ValueError as error:
                raise ValueError(f"FHIR_AUTH_CLIENTS {path}: client {client_id}: {error}") from None
        return cls(clients)

    def authenticate_secret(self, client_id: str, secret: str, method: str) -> SystemClient:
        """The client whose secret this is, when it is registered for `method`."""
        client = self._registered(client_id, method)
        if client.secret is None or not client.secret.matches(secret):
            raise InvalidClient("The client secret is wrong")
        return client

    def authenticate_assertion(
        self, assertion: str, token_endpoint: str, client_id: str | None = None
    ) -> SystemClient:
        """The client that signed a SMART Backend Services assertion: iss = sub = its id, aud
        = this token endpoint, exp at most five minutes ahead, a jti never seen before."""
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            raise InvalidClient("The client assertion is not a well-formed JWT") from None
        if not isinstance(issuer, str):
            raise InvalidClient("The client assertion has no iss claim")
        if client_id is not None and client_id != issuer:
            raise InvalidClient("client_id is not the client assertion's issuer")
        client = self._registered(issuer, PRIVATE_KEY_JWT)
        try:
            claims = decode(
                assertion,
                client.keys,
                ASSERTION_ALGORITHMS,
                issuer=client.client_id,
                audience=token_endpoint,
                subject=client.client_id,
                require=("exp", "iss", "sub", "aud", "jti"),
            )
        except InvalidToken as error:
            raise InvalidClient(f"Client assertion refused: {error.description}") from None
        now = time.time()
        if claims["exp"] > now + ASSERTION_MAX_LIFETIME + LEEWAY:
            raise InvalidClient("The client assertion expires more than five minutes ahead")
        self._use_once(client.client_id, claims["jti"], claims["exp"], now)
        return client

    def _registered(self, client_id: str, method: str) -> SystemClient:
        client = self.clients.get(client_id)
        if client is None:
            raise InvalidClient("Unknown client")
        if client.auth_method != method:
            raise InvalidClient(f"This client authenticates with {client.auth_method}")
        return client

    def _use_once(self, client_id: str, jti: str, expires: float, now: float) -> None:
        with self._lock:
            self._used = {used: at for used, at in self._used.items() if at + LEEWAY >= now}
            if (client_id, jti) in self._used:
                raise InvalidClient("The client assertion was already used")
            self._used[(client_id, jti)] = expires


def granted_scope(client: SystemClient, requested: str | None) -> str:
    """The scopes a client gets: what it asked for, narrowed to what it may have (all of it
    when it asked for none); empty when none of its request can be granted."""
    if not requested or not requested.strip():
        return client.scope
    allowed = Scopes.parse(client.scope).grants
    granted: dict[str, None] = {}
    for want in Scopes.parse(requested).grants:
        for have in allowed:
            if want.context != have.context:
                continue
            if have.type == "*":
                type_ = want.type
            elif want.type in ("*", have.type):
                type_ = have.type
            else:
                continue
            common = want.permissions & have.permissions
            permissions = "".join(p for p in PERMISSIONS if p in common)
            if permissions:
                granted[f"{want.context}/{type_}.{permissions}"] = None
    return " ".join(granted)
