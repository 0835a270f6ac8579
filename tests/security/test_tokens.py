"""Bearer token verification: what a token must prove before the server trusts it, how its
claims become a Principal, and the server's own signing key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from fhir_server.security.tokens import (
    InvalidToken,
    KeysUnavailable,
    LocalIssuer,
    NotIssuer,
    TokenVerifier,
)
from fhir_server.settings import Settings

EXTERNAL_ISSUER = "https://auth.example.org/realms/cpts"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(auth_local_key=tmp_path / "keys" / "signing.pem")


@pytest.fixture
def issuer(settings: Settings) -> LocalIssuer:
    return LocalIssuer(settings)


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for the default settings; a change of None removes the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "cpts-fhir-local",
        "aud": "cpts-fhir",
        "sub": "Practitioner/idel-1",
        "iat": now,
        "exp": now + 300,
        "jti": "token-1",
        "scope": "user/*.cruds",
        "role": ["idel"],
        "fhirUser": "Practitioner/idel-1",
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def signed(issuer: LocalIssuer, payload: dict[str, Any], **headers: Any) -> str:
    """A token signed by the local key (kid included unless a header overrides it)."""
    key, public = issuer.signing_key()
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": public["kid"], **headers})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}."


def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    return caught.value.description


# -- the server's own tokens ---------------------------------------------------------------


def test_issued_token_verifies_into_its_principal(settings: Settings, issuer: LocalIssuer) -> None:
    token = issuer.issue(
        "Practitioner/gp-7",
        roles=["gp", "coordinator"],
        scope="user/*.cruds patient/Task.rs",
        fhir_user="Practitioner/gp-7",
        patient="pat-3",
        client_id="cli",
    )
    principal = TokenVerifier(settings).verify(token)
    assert principal.subject == "Practitioner/gp-7"
    assert principal.roles == {"gp", "coordinator"}
    assert principal.scopes.contexts("Task", "r") == {"user", "patient"}
    assert principal.fhir_user == "Practitioner/gp-7"
    assert principal.patient == "pat-3"
    assert principal.client_id == "cli"
    assert principal.issuer == "cpts-fhir-local"
    assert principal.token_id and len(principal.token_id) == 36
    assert not principal.is_system


def test_issued_token_lasts_the_configured_lifetime(tmp_path: Path) -> None:
    issuer = LocalIssuer(Settings(auth_local_key=tmp_path / "k.pem", auth_token_lifetime=120))
    payload = jwt.decode(issuer.issue("s"), options={"verify_signature": False})
    assert payload["exp"] - payload["iat"] == 120
    assert jwt.get_unverified_header(issuer.issue("s"))["alg"] == "ES256"


def test_issue_refuses_unknown_roles_and_foreign_fhir_users(issuer: LocalIssuer) -> None:
    with pytest.raises(ValueError, match="unknown role 'nurse'"):
        issuer.issue("s", roles=["nurse"])
    with pytest.raises(ValueError, match="fhirUser"):
        issuer.issue("s", fhir_user="RelatedPerson/1")
    with pytest.raises(ValueError, match="lifetime"):
        issuer.issue("s", lifetime=0)


def test_signing_key_is_created_private_in_a_new_directory(
    settings: Settings, issuer: LocalIssuer
) -> None:
    issuer.issue("s")
    path = settings.auth_local_key
    assert path.parent.is_dir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["signing.pem"]  # no temporary file left
    # Another process (here another issuer) reads the same key: same kid, same public key.
    assert LocalIssuer(settings).jwks() == issuer.jwks()


def test_concurrent_first_uses_agree_on_one_key(settings: Settings) -> None:
    issuers = [LocalIssuer(settings) for _ in range(8)]
    start = threading.Barrier(len(issuers))
    kids: list[str] = []

    def first_use(issuer: LocalIssuer) -> None:
        start.wait()
        kids.append(issuer.signing_key()[1]["kid"])

    threads = [threading.Thread(target=first_use, args=(i,)) for i in issuers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(kids) == 8 and len(set(kids)) == 1
    assert len(list(settings.auth_local_key.parent.iterdir())) == 1


def test_public_jwks_has_an_rfc7638_kid(issuer: LocalIssuer) -> None:
    (key,) = issuer.jwks()["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256"
    assert "d" not in key
    canonical = json.dumps({n: key[n] for n in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    assert key["kid"] == b64(hashlib.sha256(canonical.encode()).digest())


def test_server_with_an_external_issuer_issues_nothing(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [rsa_jwk(rsa_key(), "k1")]}))
    issuer = LocalIssuer(Settings(auth_local_key=tmp_path / "k.pem", auth_jwks=str(jwks)))
    with pytest.raises(NotIssuer, match="issues no tokens"):
        issuer.issue("s")
    assert not (tmp_path / "k.pem").exists()


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": -120}, "expired"),  # times: seconds from when the test runs
        ({"nbf": 120}, "not yet valid"),
        ({"iat": 120}, "not yet valid"),
        ({"iss": "https://elsewhere.example"}, "issuer"),
        ({"aud": "another-server"}, "not issued for this server"),
        ({"exp": None}, "no exp claim"),
        ({"sub": None}, "no sub claim"),
        ({"sub": ""}, "no sub claim"),
        ({"iss": None}, "no iss claim"),
        ({"aud": None}, "no aud claim"),
        ({"fhirUser": "RelatedPerson/rp-1"}, "fhirUser"),
        ({"fhirUser": "Practitioner/a b"}, "fhirUser"),
        ({"patient": "Patient/../x y"}, "patient"),
        ({"role": {"idel": True}}, "role"),
        ({"client_id": 12}, "client_id"),
    ],
)
def test_token_with_wrong_claims_is_refused(
    settings: Settings, issuer: LocalIssuer, changes: dict[str, Any], reason: str
) -> None:
    now = int(time.time())
    changes = {
        k: now + v if k in ("exp", "nbf", "iat") and isinstance(v, int) else v
        for k, v in changes.items()
    }
    assert reason in refusal(TokenVerifier(settings), signed(issuer, claims(**changes)))


def test_clock_differences_under_thirty_seconds_are_tolerated(
    settings: Settings, issuer: LocalIssuer
) -> None:
    now = int(time.time())
    token = signed(issuer, claims(exp=now - 10, nbf=now + 10, iat=now + 10))
    assert TokenVerifier(settings).verify(token).subject == "Practitioner/idel-1"


def test_verified_token_is_kept_until_it_expires(settings: Settings, issuer: LocalIssuer) -> None:
    verifier, now = TokenVerifier(settings), int(time.time())
    token, stale = signed(issuer, claims()), signed(issuer, claims(exp=now - 10, jti="t-2"))
    assert verifier.known(token) is None
    caller = verifier.verify(token)
    assert verifier.known(token) == caller
    # Past its exp but within the tolerated clock difference: accepted, checked every time.
    assert verifier.verify(stale).token_id == "t-2"
    assert verifier.known(stale) is None


def test_kept_tokens_are_bounded(
    settings: Settings, issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fhir_server.security.tokens.KEPT_TOKENS", 2)
    verifier = TokenVerifier(settings)
    first, second, third = (signed(issuer, claims(jti=f"t-{n}")) for n in range(3))
    for token in (first, second, first, third):  # `second` is the least recently used
        verifier.verify(token)
    assert verifier.known(second) is None
    assert verifier.known(first) is not None and verifier.known(third) is not None


def test_audience_list_containing_this_server_is_accepted(
    settings: Settings, issuer: LocalIssuer
) -> None:
    token = signed(issuer, claims(aud=["other", "cpts-fhir"]))
    assert TokenVerifier(settings).verify(token).roles == {"idel"}


def test_signature_by_another_key_is_refused(settings: Settings, issuer: LocalIssuer) -> None:
    kid = issuer.signing_key()[1]["kid"]
    forged = jwt.encode(
        claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": kid}
    )
    assert refusal(TokenVerifier(settings), forged) == "The token's signature is invalid"


def test_tampered_claims_are_refused(settings: Settings, issuer: LocalIssuer) -> None:
    header, _, signature = signed(issuer, claims()).split(".")
    payload = b64(json.dumps(claims(role=["admin"])).encode())
    tampered = f"{header}.{payload}.{signature}"
    assert refusal(TokenVerifier(settings), tampered) == "The token's signature is invalid"


def test_alg_none_is_refused(settings: Settings, issuer: LocalIssuer) -> None:
    kid = issuer.signing_key()[1]["kid"]
    for alg in ("none", "None"):
        token = unsigned({"alg": alg, "typ": "JWT", "kid": kid}, claims())
        assert "algorithm is not accepted" in refusal(TokenVerifier(settings), token)


def test_hs256_with_the_public_key_as_secret_is_refused(
    settings: Settings, issuer: LocalIssuer
) -> None:
    """The classic key-confusion attack: HMAC signed with the bytes of the public key."""
    key, public = issuer.signing_key()
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verifier = TokenVerifier(settings)
    for secret in (pem, json.dumps(public).encode()):
        header = {"alg": "HS256", "typ": "JWT", "kid": public["kid"]}
        signing_input = unsigned(header, claims())[:-1]
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert "algorithm is not accepted" in refusal(verifier, f"{signing_input}.{b64(mac)}")


def test_unknown_kid_is_refused(settings: Settings, issuer: LocalIssuer) -> None:
    token = signed(issuer, claims(), kid="not-our-key")
    assert refusal(TokenVerifier(settings), token) == "No key of the issuer matches the token"


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.e30", "é.é.é"])
def test_malformed_token_is_refused(settings: Settings, token: str) -> None:
    assert refusal(TokenVerifier(settings), token) == "The token is not a well-formed JWT"


def test_refusals_never_quote_the_token(settings: Settings, issuer: LocalIssuer) -> None:
    token = signed(issuer, claims(iss="https://evil.example/Patient/secret-ins"))
    description = refusal(TokenVerifier(settings), token)
    assert "evil" not in description and "secret" not in description


def test_symmetric_algorithms_cannot_be_configured(tmp_path: Path) -> None:
    for algorithms in ("HS256", "ES256,HS512", "none", ""):
        with pytest.raises(ValueError, match="FHIR_AUTH_ALGORITHMS"):
            TokenVerifier(Settings(auth_local_key=tmp_path / "k.pem", auth_algorithms=algorithms))


def test_algorithm_outside_the_configured_list_is_refused(tmp_path: Path) -> None:
    settings = Settings(auth_local_key=tmp_path / "k.pem", auth_algorithms="RS256")
    token = LocalIssuer(settings).issue("s", scope="user/*.rs")
    assert "algorithm is not accepted" in refusal(TokenVerifier(settings), token)


# -- claim mapping ----------------------------------------------------------------------------


def test_claims_map_to_the_principal(settings: Settings, issuer: LocalIssuer) -> None:
    token = signed(
        issuer,
        claims(
            scope=None,
            scp=["user/Task.rs", "openid"],
            fhirUser="https://psc.example/fhir/PractitionerRole/pr-9",
            patient="Patient/pat-1",
            role="gp pharmacist surgeon",
            azp="lgc-app",
        ),
    )
    principal = TokenVerifier(settings).verify(token)
    assert principal.fhir_user == "PractitionerRole/pr-9"
    assert principal.patient == "pat-1"
    assert principal.roles == {"gp", "pharmacist"}  # unknown role names dropped
    assert principal.scopes.contexts("Task", "s") == {"user"}
    assert principal.client_id == "lgc-app"
    assert principal.token_id == "token-1"


def test_token_without_user_is_a_system_principal(settings: Settings, issuer: LocalIssuer) -> None:
    token = issuer.issue("robot", roles=["coordinator"], scope="system/*.rs", client_id="robot")
    principal = TokenVerifier(settings).verify(token)
    assert principal.is_system and principal.client_id == "robot"
    assert principal.scopes.contexts("Encounter", "r") == {"system"}


def test_roles_from_a_nested_claim(tmp_path: Path) -> None:
    settings = Settings(auth_local_key=tmp_path / "k.pem", auth_role_claim="realm_access.roles")
    issuer = LocalIssuer(settings)
    token = signed(issuer, claims(role=None, realm_access={"roles": ["idel", "offline"]}))
    assert TokenVerifier(settings).verify(token).roles == {"idel"}
    # The local issuer writes roles where the verifier reads them.
    assert TokenVerifier(settings).verify(issuer.issue("s", roles=["gp"])).roles == {"gp"}


def test_token_without_roles_or_scopes_verifies_with_none(
    settings: Settings, issuer: LocalIssuer
) -> None:
    principal = TokenVerifier(settings).verify(signed(issuer, claims(role=None, scope=None)))
    assert principal.roles == frozenset() and principal.scopes.grants == ()


# -- an external issuer's keys: JWKS file and URL -------------------------------------------


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}


def external(key: Any, alg: str, kid: str | None, **changes: Any) -> str:
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims(iss=EXTERNAL_ISSUER, **changes), key, algorithm=alg, headers=headers)


def test_jwks_file_keys_verify_and_only_they(tmp_path: Path) -> None:
    first, second = rsa_key(), rsa_key()
    jwks = tmp_path / "psc-jwks.json"
    jwks.write_text(json.dumps({"keys": [rsa_jwk(first, "k1"), rsa_jwk(second, "k2")]}))
    settings = Settings(
        auth_local_key=tmp_path / "local.pem", auth_jwks=str(jwks), auth_issuer=EXTERNAL_ISSUER
    )
    verifier = TokenVerifier(settings)
    assert verifier.verify(external(first, "RS256", "k1")).subject == "Practitioner/idel-1"
    assert verifier.verify(external(second, "PS256", "k2")).roles == {"idel"}
    # Without a kid, every key of the set is tried.
    assert verifier.verify(external(second, "RS256", None)).fhir_user == "Practitioner/idel-1"
    assert refusal(verifier, external(first, "RS256", "k2")) == "The token's signature is invalid"
    assert refusal(verifier, external(rsa_key(), "RS256", None)) == (
        "The token's signature is invalid"
    )
    # The local key plays no part: it is not even created.
    assert not (tmp_path / "local.pem").exists()


def test_jwks_file_without_a_usable_key_is_a_configuration_error(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "oct", "k": b64(b"secret"), "kid": "h"}]}))
    with pytest.raises(ValueError, match="FHIR_AUTH_JWKS"):
        TokenVerifier(Settings(auth_jwks=str(jwks)))
    with pytest.raises(ValueError, match="FHIR_AUTH_JWKS"):
        TokenVerifier(Settings(auth_jwks=str(tmp_path / "missing.json")))


def test_plain_http_jwks_url_is_refused_beyond_localhost() -> None:
    with pytest.raises(ValueError, match="https"):
        TokenVerifier(Settings(auth_jwks="http://idp.example.org/certs"))


class JwksServer:
    """A real HTTP server on a free local port serving one JWKS, counting its fetches."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/certs"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def idp() -> Iterator[tuple[JwksServer, rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]]:
    rsa_signer = rsa_key()
    ec_signer = ec.generate_private_key(ec.SECP256R1())
    ec_jwk = ECAlgorithm.to_jwk(ec_signer.public_key(), as_dict=True)
    server = JwksServer({"keys": [rsa_jwk(rsa_signer, "rsa-1"), {**ec_jwk, "kid": "ec-1"}]})
    yield server, rsa_signer, ec_signer
    server.stop()


def test_jwks_url_keys_verify_and_are_cached(
    tmp_path: Path, idp: tuple[JwksServer, rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]
) -> None:
    server, rsa_signer, ec_signer = idp
    settings = Settings(
        auth_local_key=tmp_path / "k.pem", auth_jwks=server.url, auth_issuer=EXTERNAL_ISSUER
    )
    verifier = TokenVerifier(settings)
    assert verifier.verify(external(rsa_signer, "RS256", "rsa-1")).roles == {"idel"}
    assert verifier.verify(external(ec_signer, "ES256", "ec-1")).roles == {"idel"}
    assert verifier.verify(external(ec_signer, "ES256", None, role="gp")).roles == {"gp"}
    assert server.fetches == 1  # one fetch, then the cache
    assert refusal(verifier, external(ec_signer, "ES256", "rsa-1")) == (
        "No key of the issuer matches the token"
    )


def test_jwks_url_unknown_kid_is_refused(
    tmp_path: Path, idp: tuple[JwksServer, rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]
) -> None:
    server, rsa_signer, _ = idp
    settings = Settings(auth_jwks=server.url, auth_issuer=EXTERNAL_ISSUER)
    token = external(rsa_signer, "RS256", "rotated-away")
    assert refusal(TokenVerifier(settings), token) == "No key of the issuer matches the token"


def test_jwks_url_out_of_reach_refuses_as_keys_unavailable(tmp_path: Path) -> None:
    server = JwksServer({"keys": []})
    url = server.url
    server.stop()  # nothing listens there any more
    verifier = TokenVerifier(Settings(auth_jwks=url, auth_issuer=EXTERNAL_ISSUER))
    with pytest.raises(KeysUnavailable):
        verifier.verify(external(rsa_key(), "RS256", "rsa-1"))


def test_key_file_readable_by_others_is_reported(
    settings: Settings, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.issue("s")
    os.chmod(settings.auth_local_key, 0o644)
    assert TokenVerifier(settings).verify(LocalIssuer(settings).issue("s2")).subject == "s2"
    assert "readable by other users" in caplog.text
