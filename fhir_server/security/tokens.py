"""Bearer tokens: verifying a JWT into a `Principal`, and the server's own issuer (a local EC
P-256 key) that signs the tokens of the `token` command and of the client-credentials endpoint.

Every signature operation is PyJWT's. Only asymmetric algorithms are ever accepted, so a public
key can never serve as an HMAC secret, and `alg=none` never verifies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jwt
from cachetools import TLRUCache
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from jwt.exceptions import InvalidSubjectError

from fhir_server.caches import Kept
from fhir_server.security.principal import ROLES, Principal
from fhir_server.security.scopes import Scopes
from fhir_server.settings import Settings

log = logging.getLogger(__name__)

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
ASYMMETRIC_ALGORITHMS = RSA_ALGORITHMS | {"ES256", "ES384", "ES512", "EdDSA"}
LEEWAY = 30  # seconds of clock difference tolerated on exp, nbf and iat
KEPT_TOKENS = 4096  # verified tokens kept, the least recently used going first
KEPT_SECONDS = 300  # how long a verified token is trusted without checking its signature again

LOCAL_ALGORITHM = "ES256"
JWKS_CACHE_SECONDS = 300
JWKS_TIMEOUT_SECONDS = 5

_ID = r"[A-Za-z0-9\-.]{1,64}"
_FHIR_USER = re.compile(rf"(?:https?://\S+/)?((?:Practitioner|PractitionerRole|Patient)/{_ID})")
_PATIENT = re.compile(rf"(?:Patient/)?({_ID})")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class InvalidToken(Exception):
    """A refused token. `description` says why in a few words, never quoting the token or its
    claims: it travels in `WWW-Authenticate: Bearer error="invalid_token"`."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class KeysUnavailable(InvalidToken):
    """The issuer's keys could not be fetched: the token was not judged. Still a refusal, but
    the server's fault (503) rather than the caller's (401)."""


class NotIssuer(RuntimeError):
    """The server signs no tokens: FHIR_AUTH_JWKS names another issuer's keys."""


@dataclass(frozen=True)
class VerificationKey:
    """A public key and the signature algorithms it may verify (never a symmetric one)."""

    kid: str | None
    key: Any
    algorithms: frozenset[str]

    @classmethod
    def of(cls, jwk: jwt.PyJWK) -> VerificationKey:
        # An RSA key verifies PKCS#1 v1.5 and PSS alike; an EC or OKP key, its curve's one.
        algorithms = RSA_ALGORITHMS if jwk.key_type == "RSA" else {jwk.algorithm_name}
        return cls(jwk.key_id, jwk.key, frozenset(algorithms) & ASYMMETRIC_ALGORITHMS)


KeySource = Callable[[str | None], list[VerificationKey]]
"""The keys that may have signed a token: those of its `kid`, or all when it names none."""


class StaticKeys:
    """A key set read once: the local key or a JWKS file, or a system client's inline JWKS."""

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        self.keys = tuple(key for key in keys if key.algorithms)

    @classmethod
    def from_jwks(cls, jwks: Any) -> StaticKeys:
        """The signature keys of a JWKS document; ValueError when it holds none."""
        if not isinstance(jwks, dict):
            raise ValueError("a JWKS must be a JSON object with a `keys` array")
        try:
            keys = jwt.PyJWKSet.from_dict(jwks).keys
        except jwt.PyJWTError as error:
            raise ValueError(f"unusable JWKS: {error}") from None
        found = cls(VerificationKey.of(k) for k in keys if k.public_key_use in ("sig", None))
        if not found.keys:
            raise ValueError("the JWKS holds no asymmetric signature key")
        return found

    def __call__(self, kid: str | None) -> list[VerificationKey]:
        return [key for key in self.keys if kid is None or key.kid == kid]


class RemoteKeys:
    """An issuer's JWKS fetched over HTTPS by PyJWT's client, which caches the set for five
    minutes and refetches it (at most every 30 s) when a token names a `kid` it lacks: keys
    the issuer rotates in are found, and unknown kids cannot make the server hammer it."""

    def __init__(self, url: str) -> None:
        self.client = jwt.PyJWKClient(
            url, lifespan=JWKS_CACHE_SECONDS, timeout=JWKS_TIMEOUT_SECONDS
        )

    def __call__(self, kid: str | None) -> list[VerificationKey]:
        try:
            if kid is not None:
                return [VerificationKey.of(self.client.get_signing_key(kid))]
            jwks = self.client.get_jwk_set()
        except jwt.PyJWKClientConnectionError:
            log.warning("the token issuer's JWKS could not be fetched")
            raise KeysUnavailable("The token issuer's keys cannot be fetched") from None
        except jwt.PyJWKClientError:
            return []  # no key of that kid, even after a refetch
        except jwt.PyJWKSetError:
            log.warning("the token issuer's JWKS holds no usable key")
            raise KeysUnavailable("The token issuer's keys are unusable") from None
        keys = (VerificationKey.of(k) for k in jwks.keys if k.public_key_use in ("sig", None))
        return [key for key in keys if key.algorithms]


def is_jwks_url(value: str) -> bool:
    return value.startswith(("https://", "http://"))


def jwks_keys(location: str) -> KeySource:
    """The keys of FHIR_AUTH_JWKS: an https URL (plain http only on the loopback interface,
    where nothing can tamper with it), else a file path."""
    if is_jwks_url(location):
        parsed = urlparse(location)
        if parsed.scheme == "http" and parsed.hostname not in _LOOPBACK:
            raise ValueError("FHIR_AUTH_JWKS must be an https URL (http only on localhost)")
        return RemoteKeys(location)
    try:
        document = json.loads(Path(location).read_text(encoding="utf-8"))
        return StaticKeys.from_jwks(document)
    except (OSError, ValueError) as error:
        raise ValueError(f"FHIR_AUTH_JWKS {location}: {error}") from None


def configured_algorithms(settings: Settings) -> frozenset[str]:
    """FHIR_AUTH_ALGORITHMS, refused unless every name is an asymmetric JWS algorithm."""
    names = {name.strip() for name in settings.auth_algorithms.split(",") if name.strip()}
    wrong = sorted(names - ASYMMETRIC_ALGORITHMS)
    if wrong or not names:
        raise ValueError(
            f"FHIR_AUTH_ALGORITHMS must list asymmetric JWS algorithms "
            f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}); refused: {', '.join(wrong) or 'none'}"
        )
    return frozenset(names)


def decode(
    token: str,
    keys: KeySource,
    algorithms: frozenset[str],
    *,
    issuer: str,
    audience: str,
    subject: str | None = None,
    require: tuple[str, ...] = ("exp", "iss", "aud", "sub"),
) -> dict[str, Any]:
    """The claims of a JWT whose signature one of `keys` verifies with one of `algorithms`,
    and whose iss, aud (and sub when given), exp, nbf and iat hold; InvalidToken otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("The token is not a well-formed JWT") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise InvalidToken("The token's signature algorithm is not accepted")
    candidates = [key for key in keys(header.get("kid")) if alg in key.algorithms]
    if not candidates:
        raise InvalidToken("No key of the issuer matches the token")
    for key in candidates:
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=audience,
                issuer=issuer,
                subject=subject,
                leeway=LEEWAY,
                options={"require": list(require)},
            )
        except jwt.InvalidSignatureError:
            continue  # without a kid, another key of the set may have signed it
        except jwt.PyJWTError as error:
            raise InvalidToken(_refusal(error)) from None
    raise InvalidToken("The token's signature is invalid")


def _refusal(error: jwt.PyJWTError) -> str:
    if isinstance(error, jwt.ExpiredSignatureError):
        return "The token has expired"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "The token is not yet valid"
    if isinstance(error, jwt.InvalidIssuerError):
        return "The token's issuer is not trusted"
    if isinstance(error, jwt.InvalidAudienceError):
        return "The token is not issued for this server"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"The token has no {error.claim} claim"
    if isinstance(error, InvalidSubjectError):
        return "The token's subject is not accepted"
    if isinstance(error, jwt.DecodeError):
        return "The token is not a well-formed JWT"
    return "The token is invalid"


def fhir_user_reference(value: str) -> str | None:
    """`Type/id` of a SMART fhirUser (relative, or an absolute URL whose tail is kept) naming a
    Practitioner, PractitionerRole or Patient; None for anything else."""
    match = _FHIR_USER.fullmatch(value)
    return match.group(1) if match else None


def patient_id(value: str) -> str | None:
    """The bare id of a `patient` launch context (`123`, or `Patient/123`); None if malformed."""
    match = _PATIENT.fullmatch(value)
    return match.group(1) if match else None


class TokenVerifier:
    """Verifies bearer tokens against the configured issuer's keys, read once.

    A client sends the same token with every request until it expires: the principal of a
    verified token is kept (at most `KEPT_TOKENS` of them, for `KEPT_SECONDS` at most and never
    past the token's `exp`), so that the signature is checked once, not on every request. A key
    withdrawn from the issuer's JWKS stops being trusted once the kept tokens it signed age
    out, as it does when the JWKS itself is read again."""

    def __init__(self, settings: Settings) -> None:
        self._kept: Kept[str, tuple[float, Principal]] = Kept(
            TLRUCache(KEPT_TOKENS, _kept_until, timer=time.time)
        )
        self.issuer = settings.auth_issuer
        self.audience = settings.auth_audience
        self.role_claim = settings.auth_role_claim
        self.algorithms = configured_algorithms(settings)
        if settings.auth_jwks is None:
            self.keys: KeySource = StaticKeys.from_jwks(LocalIssuer(settings).jwks())
        else:
            self.keys = jwks_keys(settings.auth_jwks)

    def verify(self, token: str) -> Principal:
        """The caller a token stands for; InvalidToken when it is not to be trusted. May block
        on fetching a JWKS URL (once per cache period) unless `known`: call it from a worker
        thread."""
        caller = self.known(token)
        if caller is not None:
            return caller
        claims = decode(
            token, self.keys, self.algorithms, issuer=self.issuer, audience=self.audience
        )
        caller = principal(claims, self.role_claim)
        self._kept.put(token, (float(claims["exp"]), caller))
        return caller

    def known(self, token: str) -> Principal | None:
        """The principal of a token verified a moment ago and not expired since, if any."""
        kept = self._kept.get(token)
        return kept[1] if kept is not None else None


def _kept_until(_token: str, kept: tuple[float, Principal], now: float) -> float:
    """When a verified token stops being kept: at its `exp`, `KEPT_SECONDS` from now at most."""
    return min(kept[0], now + KEPT_SECONDS)


def principal(claims: dict[str, Any], role_claim: str) -> Principal:
    """The Principal of verified claims: sub, scope (or scp), fhirUser (`Type/id`), patient
    (bare id), client_id (or azp), jti, and the roles of `role_claim` known to the server."""
    subject = claims["sub"]
    if not subject:
        raise InvalidToken("The token has no sub claim")
    fhir_user = _text(claims, "fhirUser")
    if fhir_user is not None:
        fhir_user = fhir_user_reference(fhir_user)
        if fhir_user is None:
            raise InvalidToken("The token's fhirUser is not a Practitioner or Patient reference")
    patient = _text(claims, "patient")
    if patient is not None:
        patient = patient_id(patient)
        if patient is None:
            raise InvalidToken("The token's patient claim is not a Patient id")
    return Principal(
        subject=subject,
        roles=_roles(_claim(claims, role_claim)),
        scopes=Scopes.parse(_scope(claims)),
        fhir_user=fhir_user,
        patient=patient,
        client_id=_text(claims, "client_id") or _text(claims, "azp"),
        issuer=claims["iss"],
        token_id=_text(claims, "jti"),
    )


def _text(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None or isinstance(value, str):
        return value or None
    raise InvalidToken(f"The token's {name} claim is not a string")


def _claim(claims: dict[str, Any], name: str) -> Any:
    """A claim by name, or by a dotted path into nested objects (`realm_access.roles`)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _words(value: Any, name: str) -> list[str]:
    """A space-separated string or a list of strings, as a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise InvalidToken(f"The token's {name} claim is neither a string nor a list of strings")


def _roles(value: Any) -> frozenset[str]:
    return frozenset(role for role in _words(value, "role") if role in ROLES)


def _scope(claims: dict[str, Any]) -> str:
    if "scope" in claims:
        return " ".join(_words(claims["scope"], "scope"))
    return " ".join(_words(claims.get("scp"), "scp"))


class LocalIssuer:
    """The server as its own token issuer: an EC P-256 key at FHIR_AUTH_LOCAL_KEY, created on
    first use, signing ES256 tokens. The CLI and the server read the same file, so a token the
    `token` command prints is accepted by a server started with the same settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._signing: tuple[ec.EllipticCurvePrivateKey, dict[str, str]] | None = None
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """False when FHIR_AUTH_JWKS names another issuer: then this one signs nothing."""
        return self.settings.auth_jwks is None

    def signing_key(self) -> tuple[ec.EllipticCurvePrivateKey, dict[str, str]]:
        """The private key and its public JWK (kid: its RFC 7638 thumbprint), read once."""
        if not self.active:
            raise NotIssuer(
                "This server issues no tokens: FHIR_AUTH_JWKS names the token issuer's keys"
            )
        with self._lock:
            if self._signing is None:
                key = load_or_create_key(self.settings.auth_local_key)
                jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
                public = {**jwk, "use": "sig", "alg": LOCAL_ALGORITHM, "kid": thumbprint(jwk)}
                self._signing = key, public
            return self._signing

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [self.signing_key()[1]]}

    def issue(
        self,
        subject: str,
        roles: Iterable[str] = (),
        scope: str = "",
        fhir_user: str | None = None,
        patient: str | None = None,
        client_id: str | None = None,
        lifetime: int | None = None,
    ) -> str:
        """A signed token for `subject`; ValueError for an unknown role, a fhirUser that is
        not a Practitioner/PractitionerRole/Patient reference, or a malformed patient id."""
        key, public = self.signing_key()
        roles = sorted(set(roles))
        unknown = [role for role in roles if role not in ROLES]
        if unknown:
            raise ValueError(f"unknown role {unknown[0]!r}; roles are {', '.join(ROLES)}")
        lifetime = self.settings.auth_token_lifetime if lifetime is None else lifetime
        if lifetime <= 0:
            raise ValueError("a token lifetime must be positive")
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.settings.auth_issuer,
            "aud": self.settings.auth_audience,
            "sub": subject,
            "iat": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
            "scope": scope,
            self.settings.auth_role_claim: roles,
        }
        if fhir_user is not None:
            claims["fhirUser"] = fhir_user_reference(fhir_user)
            if claims["fhirUser"] is None:
                raise ValueError(f"fhirUser {fhir_user!r} is not a Practitioner/Patient reference")
        if patient is not None:
            claims["patient"] = patient_id(patient)
            if claims["patient"] is None:
                raise ValueError(f"patient {patient!r} is not a Patient id")
        if client_id is not None:
            claims["client_id"] = client_id
        return jwt.encode(claims, key, algorithm=LOCAL_ALGORITHM, headers={"kid": public["kid"]})


def thumbprint(jwk: dict[str, str]) -> str:
    """The RFC 7638 thumbprint of an EC public JWK: SHA-256 of its required members."""
    canonical = json.dumps(
        {name: jwk[name] for name in ("crv", "kty", "x", "y")},
        separators=(",", ":"),
        sort_keys=True,
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The EC P-256 private key at `path`, created (mode 0600) when absent. Two processes
    creating it at once agree on one key: each writes a temporary file and hard-links it to
    `path`, which only the first link creates; then both read `path`."""
    if not path.exists():
        _create_key(path)
    elif path.stat().st_mode & 0o077:
        log.warning("the token signing key %s is readable by other users", path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path} is not an EC P-256 private key")
    return key


def _create_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file:  # mkstemp creates it with mode 0600
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
            log.info("token signing key created at %s", path)
        except FileExistsError:
            pass  # another process created it first: its key is the one
    finally:
        os.unlink(temporary)
