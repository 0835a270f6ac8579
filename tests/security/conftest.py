"""A live server with security on, per database (SQLite, PostgreSQL), and the CPTS of
tests/security/cpts.py seeded before each test through the HTTP API, by the hospital's system
client (patients, their data, the directory) and the administrator (definitions): seeding is
itself an authorised path. Tests then call the server as one role or another, each with a
token of the server's own issuer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from fhir_server.security.tokens import LocalIssuer
from pathways import apply, measures
from tests.conftest import BACKENDS, LiveServer, database_url, make_server, wipe
from tests.rest.resources import put_transaction
from tests.security import cpts

FHIR_JSON = "application/fhir+json"
USER_SCOPE = "user/*.cruds"
SYSTEM_SCOPE = "system/*.cruds"

AsRole = Callable[..., httpx.Client]


@pytest.fixture(scope="session", params=BACKENDS)
def secure_live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The server with its own token issuer (a key in a temporary directory), and the two
    operations of the pathway engine that roles restrict ($apply, $evaluate-measure)."""
    tmp = tmp_path_factory.mktemp(f"security-{request.param}")
    server = make_server(
        database_url(request.param, request, tmp),
        security_enabled=True,
        auth_local_key=tmp / "keys" / "signing.pem",
    )
    apply.install(server)
    measures.install(server)
    live = LiveServer(server)
    yield live
    live.stop()
    server.close()


def client(live: LiveServer, token: str | None) -> httpx.Client:
    headers = {"accept": FHIR_JSON}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=live.url, headers=headers, timeout=30)


@pytest.fixture
def clients(secure_live: LiveServer) -> Iterator[AsRole]:
    """`clients(role, fhir_user=..., scope=..., patient=...)`: a client whose token has that
    role (none for ""), as that user (the role's seeded Practitioner unless given; a system
    client for `hospital`), with `user/*.cruds` (a user) or `system/*.cruds` (a system)
    unless a scope is given."""
    issuer = LocalIssuer(secure_live.server.settings)
    opened: list[httpx.Client] = []

    def make(
        role: str,
        fhir_user: str | None = None,
        scope: str | None = None,
        patient: str | None = None,
        client_id: str | None = None,
    ) -> httpx.Client:
        if fhir_user is None and role != "hospital":
            fhir_user = cpts.PRACTITIONER.get(role)
        if scope is None:
            scope = USER_SCOPE if fhir_user else SYSTEM_SCOPE
        if fhir_user is None and client_id is None:
            client_id = f"{role}-system"
        subject = fhir_user.split("/")[1] if fhir_user else client_id
        token = issuer.issue(
            subject,
            [role] if role else [],
            scope,
            fhir_user=fhir_user,
            patient=patient,
            client_id=client_id,
        )
        opened.append(client(secure_live, token))
        return opened[-1]

    yield make
    for c in opened:
        c.close()


@pytest.fixture
def anonymous(secure_live: LiveServer) -> Iterator[httpx.Client]:
    """A client with no token at all."""
    with client(secure_live, None) as c:
        yield c


@pytest.fixture
def as_role(seeded: None, clients: AsRole) -> AsRole:
    """`clients`, on the seeded CPTS: `as_role("idel", "Practitioner/idel-1")`."""
    return clients


@pytest.fixture
def hospital(as_role: AsRole) -> httpx.Client:
    """The hospital's integration engine: a system client (`system/*.cruds`)."""
    return as_role("hospital", client_id=cpts.HOSPITAL_CLIENT)


@pytest.fixture
def auditor(as_role: AsRole) -> httpx.Client:
    return as_role("auditor")


@pytest.fixture
def seeded(secure_live: LiveServer, clients: AsRole) -> None:
    """An empty database, then the CPTS of tests/security/cpts.py, written through the API."""
    wipe(secure_live.server)
    writer = clients("hospital", client_id=cpts.HOSPITAL_CLIENT)
    expect(writer.post("/", json=put_transaction(cpts.directory() + cpts.patient_data())), 200)
    admin = clients("admin")
    expect(admin.post("/", json=put_transaction(cpts.definitions())), 200)


# -- reading responses ------------------------------------------------------------------------


def expect(response: httpx.Response, status: int) -> dict[str, Any]:
    """The JSON body of a response that must have `status`; a 403 must be an OperationOutcome
    whose issue is `forbidden`."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url} → {response.status_code}, "
        f"not {status}: {response.text[:500]}"
    )
    body = response.json() if response.content else {}
    if status == 403:
        assert_forbidden(response)
    return body


def assert_forbidden(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text[:500]
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [issue["code"] for issue in outcome["issue"]] == ["forbidden"], outcome


def readable(client: httpx.Client, *references: str) -> bool:
    """True when every one of `references` reads 200, False when every one is refused (a 403
    `forbidden`); a mix, or any other answer, fails the test."""
    responses = [client.get(f"/{reference}") for reference in references]
    statuses = {r.status_code for r in responses}
    assert statuses in ({200}, {403}), {
        reference: r.status_code for reference, r in zip(references, responses, strict=True)
    }
    if statuses == {403}:
        for response in responses:
            assert_forbidden(response)
    return statuses == {200}


def ids(response: httpx.Response) -> set[str]:
    """`Type/id` of the resources of a search, matched or included."""
    bundle = expect(response, 200)
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if "resource" in e
    }


def audit_events(auditor: httpx.Client, **params: str) -> list[dict[str, Any]]:
    """Every AuditEvent matching `params`, all pages read."""
    found: list[dict[str, Any]] = []
    response = auditor.get("/AuditEvent", params={"_count": "500", **params})
    while True:
        bundle = expect(response, 200)
        found += [e["resource"] for e in bundle.get("entry", [])]
        following = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        if not following:
            return found
        response = auditor.get(following[0])
