"""How the messages arrive: MLLP with many messages per connection and many connections at
once, MLLP over TLS with a required client certificate, HTTP, and the `mllp` command."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from adapters.hl7v2 import DOOR
from adapters.hl7v2.receiver import Receiver
from adapters.hl7v2.settings import Hl7v2Settings
from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.server import Server
from fhir_server.settings import Settings
from fhir_server.storage import journal
from tests.adapters.hl7v2 import certificates
from tests.adapters.hl7v2.conftest import Door, Listener
from tests.adapters.hl7v2.hospital import Ack, Engine
from tests.adapters.hl7v2.messages import DUPONT, IPP_SYSTEM, Person, adt, fixture

ROOT = Path(__file__).resolve().parents[3]


def test_many_messages_on_many_connections_at_once(door: Door) -> None:
    def hospital(number: int) -> list[str]:
        person = Person(**{**DUPONT.__dict__, "ipp": f"9{number:05d}", "ins": ""})
        person = Person(**{**person.__dict__, "reliability": "PROV"})
        engine = Engine(door.port)
        try:
            visit = f"V{number}"
            return [
                engine.send(
                    adt(event, f"{number}-{i}", person, visit, movement=f"{number}-{i}")
                ).code
                for i, event in enumerate(("A01", "A02", "A03"))
            ]
        finally:
            engine.close()

    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(hospital, range(10)))
    assert codes == [["AA", "AA", "AA"]] * 10
    assert len(door.search("Patient", _count="50")) == 10
    assert {e["status"] for e in door.search("Encounter", _count="50")} == {"finished"}


def test_frames_split_across_packets_and_bytes_between_frames(door: Door) -> None:
    message = adt("A01", "1", movement="M1")
    with socket.create_connection(("127.0.0.1", door.port), timeout=60) as raw:
        raw.sendall(b"\r\n" + b"\x0b" + message[:50])  # noise before the frame, then half
        raw.sendall(message[50:] + b"\x1c\r")
        reply = b""
        while not reply.endswith(b"\x1c\r"):
            reply += raw.recv(65536)
    assert Ack.parse(reply.strip(b"\x0b\x1c\r")).code == "AA"


@pytest.fixture
def tls(door: Door, tmp_path: Path) -> tuple[Listener, certificates.Files]:
    files = certificates.make(tmp_path)
    settings = Hl7v2Settings(
        tls_cert=files.server_cert, tls_key=files.server_key, tls_client_ca=files.ca
    )
    listener = Listener(Receiver(door.server, settings))
    yield listener, files
    listener.stop()


def test_tls_with_a_client_certificate(
    door: Door, tls: tuple[Listener, certificates.Files]
) -> None:
    listener, files = tls
    context = ssl.create_default_context(cafile=files.ca)
    context.load_cert_chain(files.client_cert, files.client_key)
    engine = Engine(listener.port, context)
    try:
        assert engine.send(adt("A01", "1", movement="M1")).code == "AA"
    finally:
        engine.close()
    assert door.one("Patient", identifier=f"{IPP_SYSTEM}|{DUPONT.ipp}")


def test_tls_refuses_a_client_without_certificate(
    door: Door, tls: tuple[Listener, certificates.Files]
) -> None:
    listener, files = tls
    context = ssl.create_default_context(cafile=files.ca)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        engine = Engine(listener.port, context)
        try:
            engine.send(adt("A01", "1", movement="M1"))
        finally:
            engine.close()
    with pytest.raises((ssl.SSLError, ConnectionError)):  # nor in clear
        engine = Engine(listener.port)
        try:
            engine.send(adt("A01", "1", movement="M1"))
        finally:
            engine.close()
    assert door.versions() == 0


def test_http_endpoint(door: Door) -> None:
    response = door.fhir.post(
        "/hl7v2",
        content=fixture("pamfr-adt-a01-admission"),
        headers={"content-type": "x-application/hl7-v2+er7"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/hl7-v2"
    ack = Ack.parse(response.content)
    assert (ack.code, ack.control_id) == ("AA", "3975")
    assert door.one("Encounter")["status"] == "in-progress"
    # The same message over MLLP is the same message: answered from the journal
    assert door.send(fixture("pamfr-adt-a01-admission")).raw == response.content
    refused = door.fhir.post("/hl7v2", content=b"not a message")
    assert refused.status_code == 200 and Ack.parse(refused.content).code == "AR"
    empty = door.fhir.post("/hl7v2", content=b"")
    assert empty.status_code == 400
    assert empty.json()["resourceType"] == "OperationOutcome"


def test_mllp_command_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fhir_server", "mllp", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--host" in result.stdout and "--port" in result.stdout


def test_mllp_command_receives_messages(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'mllp.db'}",
        "FHIR_HL7V2_RETENTION_DAYS": "30",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "fhir_server", "mllp", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = ""
        while "MLLP listening on" not in line:
            line = process.stdout.readline()
            assert line or process.poll() is None, "the listener did not start"
        port = int(line.strip().rsplit(":", 1)[1])
        engine = Engine(port)
        try:
            assert engine.send(fixture("pamfr-adt-a01-admission")).code == "AA"
        finally:
            engine.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    # The database of DATABASE_URL holds what the message made, and its journal entry
    server = Server(Settings(database_url=env["DATABASE_URL"]), load_plugins=False)
    try:
        for type_ in ("Patient", "Encounter", "Organization"):
            found = server.engine.execute(
                Interaction(Kind.SEARCH_TYPE, type_, params=[("_summary", "count")]), Context()
            )
            assert found.resource["total"] == 1, type_
        with server.database.transaction(write=False) as conn:
            entry = journal.find(conn, DOOR, "GAM|CHU-X", "3975")
        assert entry is not None and entry.outcome == "accepted"
    finally:
        server.close()
