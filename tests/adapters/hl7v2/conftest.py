"""The HL7 v2 door on a live server, per database (SQLite, PostgreSQL): the MLLP listener runs
in an event loop of its own thread and the HTTP API in uvicorn, both on one Server. Every test
starts from an empty database and talks to the door as a hospital does: MLLP frames over a
real socket, then FHIR reads over HTTP to see what was stored. The servers with the pathway
engine of tests/pathways (`pathway_live`, `api`) are offered too, for the messages that start
pathways."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from adapters.hl7v2.mllp import MllpServer
from adapters.hl7v2.receiver import Receiver
from adapters.hl7v2.settings import Hl7v2Settings
from fhir_server.server import Server
from fhir_server.settings import Settings
from tests.adapters.hl7v2.hospital import Ack, Engine
from tests.conftest import BACKENDS, LiveServer, database_url, wipe
from tests.pathways.conftest import api, pathway_live  # noqa: F401 (fixtures)


class Listener:
    """An MLLP listener served by an event loop running in a thread."""

    def __init__(self, receiver: Receiver) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = MllpServer(receiver, "127.0.0.1", 0)
        self.call(self.server.start())
        self.port = self.server.port

    def call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def stop(self) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session", params=BACKENDS)
def door_live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, Listener]]:
    url = database_url(request.param, request, tmp_path_factory.mktemp(f"hl7v2-{request.param}"))
    server = Server(
        Settings(database_url=url, security_enabled=False),
        load_plugins=False,
        load_conformance=False,
    )
    live = LiveServer(server)
    listener = Listener(Receiver(server, Hl7v2Settings()))
    yield live, listener
    listener.stop()
    live.stop()
    server.close()


@dataclass
class Door:
    server: Server
    receiver: Receiver
    port: int
    fhir: httpx.Client
    engine: Engine

    def send(self, message: bytes, encoding: str = "utf-8") -> Ack:
        return self.engine.send(message, encoding)

    def search(self, type_: str, **params: str) -> list[dict[str, Any]]:
        response = self.fhir.get(f"/{type_}", params=params)
        assert response.status_code == 200, response.text
        return [entry["resource"] for entry in response.json().get("entry", [])]

    def one(self, type_: str, **params: str) -> dict[str, Any]:
        found = self.search(type_, **params)
        assert len(found) == 1, f"{len(found)} {type_} match {params}"
        return found[0]

    def read(self, reference: str) -> dict[str, Any]:
        response = self.fhir.get(f"/{reference}")
        assert response.status_code == 200, response.text
        return response.json()

    def versions(self) -> int:
        """How many versions of all resources the server holds: unchanged when a message
        changed nothing."""
        return len(self.fhir.get("/_history", params={"_count": "500"}).json().get("entry", []))


@pytest.fixture
def door(door_live: tuple[LiveServer, Listener]) -> Iterator[Door]:
    live, listener = door_live
    wipe(live.server)
    engine = Engine(listener.port)
    with httpx.Client(
        base_url=live.url, timeout=60, headers={"accept": "application/fhir+json"}
    ) as fhir:
        yield Door(live.server, listener.server.receiver, listener.port, fhir, engine)
    engine.close()
