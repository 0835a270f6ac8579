"""The HL7 v2 door under security: MLLP carries no token, so the listener acts for the system
client of its configuration (role hospital), and what its messages write is audited as that
client's, from the `hl7v2` door. A nurse's token reads what the message made only for her
patients."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapters.hl7v2.receiver import Receiver
from adapters.hl7v2.settings import Hl7v2Settings
from fhir_server.security.tokens import LocalIssuer
from tests.adapters.hl7v2.conftest import Listener
from tests.adapters.hl7v2.hospital import Engine
from tests.adapters.hl7v2.messages import adt
from tests.conftest import BACKENDS, LiveServer, database_url, make_server, wipe


@pytest.fixture(params=BACKENDS)
def secured(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[LiveServer, Engine, LocalIssuer]]:
    url = database_url(request.param, request, tmp_path)
    server = make_server(url, security_enabled=True, auth_local_key=tmp_path / "key.pem")
    wipe(server)  # the PostgreSQL database is shared by the session
    live = LiveServer(server)
    listener = Listener(Receiver(server, Hl7v2Settings(client_id="chu-t-integration")))
    engine = Engine(listener.port)
    yield live, engine, LocalIssuer(server.settings)
    engine.close()
    listener.stop()
    live.stop()
    server.close()


def test_mllp_messages_are_written_and_audited_as_the_doors_client(
    secured: tuple[LiveServer, Engine, LocalIssuer],
) -> None:
    live, engine, issuer = secured
    assert engine.send(adt("A01", "1", movement="M1")).code == "AA"

    auditor = issuer.issue("aud-1", ["auditor"], "user/*.rs", fhir_user="Practitioner/aud-1")
    hospital = issuer.issue("chu", ["hospital"], "system/*.rs", client_id="chu")
    with httpx.Client(base_url=live.url, timeout=30) as http:
        patients = http.get("/Patient", headers={"authorization": f"Bearer {hospital}"}).json()
        (patient,) = [e["resource"] for e in patients["entry"]]
        trail = http.get(
            "/AuditEvent",
            params={"patient": f"Patient/{patient['id']}", "action": "C", "_count": "50"},
            headers={"authorization": f"Bearer {auditor}"},
        ).json()
        events = [e["resource"] for e in trail["entry"]]
        nurse = issuer.issue("idel-x", ["idel"], "user/*.rs", fhir_user="Practitioner/idel-x")
        outside = http.get(
            f"/Patient/{patient['id']}", headers={"authorization": f"Bearer {nurse}"}
        )

    written = {e["what"]["reference"].split("/")[0] for event in events for e in event["entity"]}
    assert {"Patient", "Encounter"} <= written
    for event in events:
        assert event["source"]["site"] == "hl7v2"
        assert event["agent"][0]["who"]["identifier"]["value"] == "chu-t-integration"
        assert event["outcome"] == "0"
    assert all("DUPONT" not in json.dumps(event) for event in events)  # no content
    assert outside.status_code == 403  # a nurse outside the patient's care sees nothing
