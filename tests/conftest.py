"""Test fixtures: the same storage and REST suites run on SQLite and on PostgreSQL, through a
live HTTP server (uvicorn on a free port) per database."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import text

from fhir_server.rest.app import create_app
from fhir_server.server import Server
from fhir_server.settings import Settings
from fhir_server.storage.schema import Base
from tests.postgres import PostgresUnavailable, throwaway_postgres

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with ExitStack() as stack:
        try:
            url = stack.enter_context(throwaway_postgres())
        except PostgresUnavailable as exc:
            if os.environ.get("FHIR_REQUIRE_POSTGRES") == "1":
                pytest.fail(f"PostgreSQL is required (FHIR_REQUIRE_POSTGRES=1): {exc}")
            pytest.skip(f"PostgreSQL tests need a PostgreSQL server: {exc}")
        yield url


def database_url(backend: str, request: pytest.FixtureRequest, tmp: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'fhir.db'}"
    return request.getfixturevalue("postgres_url")


class LiveServer:
    """The application served by uvicorn in a thread, on a free local port."""

    def __init__(self, server: Server) -> None:
        self.server = server
        config = uvicorn.Config(
            create_app(server=server), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        self.uvicorn = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.uvicorn.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.uvicorn.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        port = self.uvicorn.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(10)


def make_server(url: str, load_conformance: bool = False, **overrides: object) -> Server:
    """A server without plugins; the conformance resources (1,300 SearchParameters, seconds to
    load) only where a test asks for them. Security is off unless a test turns it on: the
    suites of the other subsystems test FHIR behaviour, tests/security tests who may see it."""
    overrides.setdefault("security_enabled", False)
    return Server(
        Settings(database_url=url, **overrides),
        load_plugins=False,
        load_conformance=load_conformance,
    )


def wipe(server: Server) -> None:
    """Empty every table (the schema stays)."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with server.database.transaction(write=True) as conn:
        if server.database.is_postgres:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A server of its own, without plugins, on an empty database of each backend."""
    server = make_server(database_url(request.param, request, tmp_path))
    wipe(server)
    yield server
    server.close()


@pytest.fixture(scope="session", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    url = database_url(request.param, request, tmp_path_factory.mktemp(request.param))
    server = make_server(url)
    live = LiveServer(server)
    yield live
    live.stop()
    server.close()


@pytest.fixture
def fhir(live: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client on a live server whose database is empty."""
    wipe(live.server)
    with httpx.Client(
        base_url=live.url, timeout=30, headers={"accept": "application/fhir+json"}
    ) as client:
        yield client


@pytest.fixture
def backend(live: LiveServer) -> str:
    return live.server.database.dialect
