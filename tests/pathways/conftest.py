"""A live server with the pathway plugin installed, on SQLite and PostgreSQL. Outbox events
are dispatched by the test (`dispatch`), never by a background thread, so that each test
decides when triggers and progression run."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from fhir_server.server import Server
from fhir_server.settings import Settings
from pathways import catalogue
from tests.conftest import BACKENDS, LiveServer, database_url, wipe
from tests.pathways.builders import failed_events


@pytest.fixture(scope="session", params=BACKENDS)
def pathway_live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    url = database_url(request.param, request, tmp_path_factory.mktemp(f"pathways-{request.param}"))
    server = Server(Settings(database_url=url, security_enabled=False), load_conformance=False)
    live = LiveServer(server)
    yield live
    live.stop()
    server.close()


@pytest.fixture
def api(pathway_live: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client on an empty database holding only the shipped pathway definitions."""
    wipe(pathway_live.server)
    catalogue.load_definitions(pathway_live.server)
    with httpx.Client(
        base_url=pathway_live.url, timeout=30, headers={"accept": "application/fhir+json"}
    ) as client:
        yield client


@pytest.fixture
def server(pathway_live: LiveServer) -> Server:
    return pathway_live.server


@pytest.fixture
def dispatch(server: Server) -> Callable[[], int]:
    """Run every pending outbox event now (triggers, progression); returns how many ran, after
    checking that the handling of none of them failed."""
    dispatcher = server.dispatcher()

    def run() -> int:
        handled = dispatcher.run_once()
        assert failed_events(server) == []
        return handled

    return run
