"""The client-credentials token endpoint and SMART discovery, over HTTP on a live server: how
system clients authenticate (secret or signed assertion), what scopes they get, and that the
token they receive is one the server trusts, with the roles of their registration.

These endpoints touch no FHIR data: SQLite is enough behind them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from fhir_server.security.clients import ASSERTION_TYPE, ClientRegistry, hash_secret
from fhir_server.security.tokens import LocalIssuer, TokenVerifier
from tests.conftest import LiveServer, make_server

LAB_SECRET = "lab-secret-ĝ:with colon"  # non-ASCII and ':' travel form-encoded in Basic
SYNC_SECRET = "sync-secret"
ROBOT_KEY = ec.generate_private_key(ec.SECP384R1())


def clients_file(path: Path) -> Path:
    robot_jwk = ECAlgorithm.to_jwk(ROBOT_KEY.public_key(), as_dict=True)
    path.write_text(
        json.dumps(
            {
                "clients": {
                    "lab": {
                        "roles": ["hospital"],
                        "scope": "system/Observation.cru system/DiagnosticReport.cru",
                        "token_endpoint_auth_method": "client_secret_basic",
                        "secret_hash": hash_secret(LAB_SECRET),
                    },
                    "sync": {
                        "roles": ["coordinator", "auditor"],
                        "scope": "system/*.rs",
                        "token_endpoint_auth_method": "client_secret_post",
                        "secret_hash": hash_secret(SYNC_SECRET),
                    },
                    "robot": {
                        "roles": ["coordinator"],
                        "scope": "system/Task.cruds system/Patient.rs",
                        "token_endpoint_auth_method": "private_key_jwt",
                        "jwks": {"keys": [{**robot_jwk, "kid": "robot-1"}]},
                    },
                }
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("token-endpoint")
    server = make_server(
        f"sqlite:///{tmp / 'fhir.db'}",
        security_enabled=True,
        auth_local_key=tmp / "keys" / "signing.pem",
        auth_clients=clients_file(tmp / "clients.json"),
        auth_token_lifetime=600,
    )
    live = LiveServer(server)
    yield live
    live.stop()
    server.close()


@pytest.fixture
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        yield client


def token_url(live: LiveServer) -> str:
    return f"{live.url}/auth/token"


def assertion(live: LiveServer, **changes: Any) -> str:
    """A SMART Backend Services client assertion of `robot`; a change of None removes it."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "robot",
        "sub": "robot",
        "aud": token_url(live),
        "exp": now + 240,
        "jti": str(uuid.uuid4()),
    }
    key = changes.pop("key", ROBOT_KEY)
    claims.update(changes)
    payload = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(payload, key, algorithm="ES384", headers={"kid": "robot-1"})


def with_assertion(signed: str, **form: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
        **form,
    }


def error_of(response: httpx.Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error
    return body["error_description"]


# -- discovery and keys ---------------------------------------------------------------------


def test_smart_configuration_states_what_the_server_does(
    live: LiveServer, http: httpx.Client
) -> None:
    response = http.get("/.well-known/smart-configuration")  # no token: it is public
    assert response.status_code == 200
    config = response.json()
    assert config["issuer"] == "cpts-fhir-local"
    assert config["token_endpoint"] == token_url(live)
    assert config["jwks_uri"] == f"{live.url}/auth/jwks"
    assert config["grant_types_supported"] == ["client_credentials"]
    assert set(config["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    }
    assert {"ES384", "RS384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    assert set(config["capabilities"]) == {
        "client-confidential-symmetric",
        "client-confidential-asymmetric",
        "permission-v1",
        "permission-v2",
        "permission-user",
        "permission-patient",
    }
    assert "system/*.cruds" in config["scopes_supported"]
    assert config["response_types_supported"] == []
    assert "authorization_endpoint" not in config


def test_jwks_is_the_public_key_that_signs_the_tokens(live: LiveServer, http: httpx.Client) -> None:
    response = http.get("/auth/jwks")
    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert key["kty"] == "EC" and "d" not in key
    assert response.json() == LocalIssuer(live.server.settings).jwks()


# -- secrets ----------------------------------------------------------------------------------


def test_client_secret_basic_gets_a_token_with_its_roles(
    live: LiveServer, http: httpx.Client
) -> None:
    response = http.post(
        "/auth/token", data={"grant_type": "client_credentials"}, auth=("lab", LAB_SECRET)
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 600
    assert body["scope"] == "system/Observation.cru system/DiagnosticReport.cru"
    principal = TokenVerifier(live.server.settings).verify(body["access_token"])
    assert principal.roles == {"hospital"}
    assert principal.subject == "lab" and principal.client_id == "lab"
    assert principal.is_system and principal.fhir_user is None
    assert principal.scopes.contexts("Observation", "c") == {"system"}


def test_client_secret_post_gets_a_token(live: LiveServer, http: httpx.Client) -> None:
    response = http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sync",
            "client_secret": SYNC_SECRET,
        },
    )
    assert response.status_code == 200, response.text
    principal = TokenVerifier(live.server.settings).verify(response.json()["access_token"])
    assert principal.roles == {"coordinator", "auditor"}
    assert principal.scopes.text == "system/*.rs"


def test_wrong_secret_in_basic_is_401_with_a_basic_challenge(http: httpx.Client) -> None:
    response = http.post(
        "/auth/token", data={"grant_type": "client_credentials"}, auth=("lab", "guess")
    )
    assert error_of(response, 401, "invalid_client") == "The client secret is wrong"
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert "guess" not in response.text


def test_wrong_secret_in_the_form_is_invalid_client(http: httpx.Client) -> None:
    response = http.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "client_id": "sync", "client_secret": "x"},
    )
    error_of(response, 400, "invalid_client")
    assert "www-authenticate" not in response.headers


def test_unknown_client_is_invalid_client(http: httpx.Client) -> None:
    response = http.post(
        "/auth/token", data={"grant_type": "client_credentials"}, auth=("nobody", "x")
    )
    assert error_of(response, 401, "invalid_client") == "Unknown client"


def test_client_must_use_its_registered_method(http: httpx.Client) -> None:
    response = http.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "client_id": "lab", "client_secret": LAB_SECRET},
    )
    assert "client_secret_basic" in error_of(response, 400, "invalid_client")


def test_request_without_client_authentication_is_refused(http: httpx.Client) -> None:
    response = http.post("/auth/token", data={"grant_type": "client_credentials"})
    error_of(response, 400, "invalid_client")
    response = http.post(
        "/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"authorization": "Basic !!!"},
    )
    error_of(response, 401, "invalid_client")


# -- private_key_jwt (SMART Backend Services) -------------------------------------------------


def test_private_key_jwt_gets_a_token(live: LiveServer, http: httpx.Client) -> None:
    response = http.post("/auth/token", data=with_assertion(assertion(live)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "system/Task.cruds system/Patient.rs"
    principal = TokenVerifier(live.server.settings).verify(body["access_token"])
    assert principal.roles == {"coordinator"} and principal.client_id == "robot"


def test_replayed_assertion_is_refused(live: LiveServer, http: httpx.Client) -> None:
    signed = assertion(live)
    assert http.post("/auth/token", data=with_assertion(signed)).status_code == 200
    replay = http.post("/auth/token", data=with_assertion(signed))
    assert error_of(replay, 400, "invalid_client") == "The client assertion was already used"
    # The same jti in a freshly signed assertion is a replay too.
    jti = jwt.decode(signed, options={"verify_signature": False})["jti"]
    again = http.post("/auth/token", data=with_assertion(assertion(live, jti=jti)))
    error_of(again, 400, "invalid_client")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aud": "https://another.example/token"}, "not issued for this server"),
        ({"exp": int(time.time()) + 3600}, "more than five minutes"),
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"jti": None}, "no jti claim"),
        ({"sub": "someone-else"}, "subject"),
        ({"key": ec.generate_private_key(ec.SECP384R1())}, "signature is invalid"),
        ({"iss": "lab", "sub": "lab"}, "authenticates with client_secret_basic"),
        ({"iss": "stranger", "sub": "stranger"}, "Unknown client"),
    ],
)
def test_bad_assertion_is_refused(
    live: LiveServer, http: httpx.Client, changes: dict[str, Any], reason: str
) -> None:
    response = http.post("/auth/token", data=with_assertion(assertion(live, **changes)))
    assert reason in error_of(response, 400, "invalid_client")


def test_assertion_of_another_client_id_is_refused(live: LiveServer, http: httpx.Client) -> None:
    response = http.post("/auth/token", data=with_assertion(assertion(live), client_id="lab"))
    error_of(response, 400, "invalid_client")


def test_assertion_needs_the_jwt_bearer_type(live: LiveServer, http: httpx.Client) -> None:
    form = with_assertion(assertion(live), client_assertion_type="urn:other")
    error_of(http.post("/auth/token", data=form), 400, "invalid_request")


# -- scopes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "granted"),
    [
        ("system/Task.rs", "system/Task.rs"),
        ("system/*.rs", "system/Task.rs system/Patient.rs"),
        ("system/Patient.cruds openid", "system/Patient.rs"),
        ("system/Task.read", "system/Task.rs"),
        ("system/Task.c system/Observation.r", "system/Task.c"),
    ],
)
def test_requested_scopes_are_narrowed_to_the_allowed(
    live: LiveServer, http: httpx.Client, requested: str, granted: str
) -> None:
    response = http.post("/auth/token", data=with_assertion(assertion(live), scope=requested))
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == granted
    principal = TokenVerifier(live.server.settings).verify(response.json()["access_token"])
    assert principal.scopes.text == granted


@pytest.mark.parametrize("requested", ["system/Observation.rs", "user/Task.rs", "openid"])
def test_scopes_beyond_the_allowed_are_invalid_scope(
    live: LiveServer, http: httpx.Client, requested: str
) -> None:
    response = http.post("/auth/token", data=with_assertion(assertion(live), scope=requested))
    error_of(response, 400, "invalid_scope")


# -- malformed requests ----------------------------------------------------------------------


def test_other_grant_types_are_unsupported(http: httpx.Client) -> None:
    for grant in ("password", "authorization_code"):
        response = http.post("/auth/token", data={"grant_type": grant}, auth=("lab", LAB_SECRET))
        error_of(response, 400, "unsupported_grant_type")
    error_of(http.post("/auth/token", data={}, auth=("lab", LAB_SECRET)), 400, "invalid_request")


def test_request_must_be_a_form_with_single_parameters(http: httpx.Client) -> None:
    response = http.post("/auth/token", json={"grant_type": "client_credentials"})
    error_of(response, 400, "invalid_request")
    repeated = http.post(
        "/auth/token",
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={"content-type": "application/x-www-form-urlencoded"},
        auth=("lab", LAB_SECRET),
    )
    assert "repeated" in error_of(repeated, 400, "invalid_request")


def test_two_authentication_methods_at_once_are_refused(
    live: LiveServer, http: httpx.Client
) -> None:
    response = http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sync",
            "client_secret": SYNC_SECRET,
        },
        auth=("lab", LAB_SECRET),
    )
    error_of(response, 400, "invalid_request")


# -- a server whose tokens come from another issuer -------------------------------------------


def test_server_of_an_external_issuer_issues_nothing(tmp_path: Path) -> None:
    jwks_url = "https://auth.example.org/realms/cpts/protocol/openid-connect/certs"
    server = make_server(
        f"sqlite:///{tmp_path / 'fhir.db'}",
        security_enabled=True,
        auth_issuer="https://auth.example.org/realms/cpts",
        auth_jwks=jwks_url,
        auth_local_key=tmp_path / "signing.pem",
    )
    live = LiveServer(server)
    try:
        with httpx.Client(base_url=live.url, timeout=30) as http:
            config = http.get("/.well-known/smart-configuration").json()
            assert config["issuer"] == "https://auth.example.org/realms/cpts"
            assert config["jwks_uri"] == jwks_url
            assert "token_endpoint" not in config and "grant_types_supported" not in config
            assert not any(c.startswith("client-") for c in config["capabilities"])
            keys = http.get("/auth/jwks")
            assert keys.status_code == 404
            assert keys.json()["resourceType"] == "OperationOutcome"
            token = http.post("/auth/token", data={"grant_type": "client_credentials"})
            assert token.status_code == 404
        assert not (tmp_path / "signing.pem").exists()
    finally:
        live.stop()
        server.close()


# -- the clients file -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "fault"),
    [
        ({"roles": ["nurse"]}, "roles"),
        ({"scope": "openid"}, "scope"),
        ({"token_endpoint_auth_method": "none"}, "token_endpoint_auth_method"),
        ({"secret_hash": None}, "needs a secret_hash"),
        ({"secret_hash": "plain-text-secret"}, "scrypt$N$r$p$salt$hash"),
        ({"secret_hash": "scrypt$1000$8$1$AAAA$AAAA"}, "impossible scrypt"),
        ({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}}, "JWKS"),
    ],
)
def test_wrong_clients_file_is_refused_naming_the_client(
    tmp_path: Path, entry: dict[str, Any], fault: str
) -> None:
    valid = {
        "roles": ["hospital"],
        "scope": "system/*.rs",
        "token_endpoint_auth_method": "client_secret_basic",
        "secret_hash": hash_secret("s"),
    }
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": {"lab": {**valid, **entry}}}))
    with pytest.raises(ValueError, match="client lab") as caught:
        ClientRegistry.load(path)
    assert fault in str(caught.value)
