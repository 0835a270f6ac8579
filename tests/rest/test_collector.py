"""A started server sets Python's garbage collector for its work (fhir_server.collector)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from fhir_server import collector
from fhir_server.rest.app import create_app
from fhir_server.settings import Settings
from tests.conftest import make_server


@pytest.fixture
def collector_restored() -> Iterator[tuple[int, int, int]]:
    gc.unfreeze()
    threshold = gc.get_threshold()
    yield threshold
    gc.unfreeze()
    gc.set_threshold(*threshold)


def _started(app: FastAPI) -> tuple[int, tuple[int, int, int]]:
    """The collector's frozen objects and thresholds while `app` runs (its lifespan)."""

    async def run() -> tuple[int, tuple[int, int, int]]:
        async with app.router.lifespan_context(app):
            return gc.get_freeze_count(), gc.get_threshold()

    return asyncio.run(run())


def test_a_started_server_leaves_its_startup_objects_out_of_collections(
    tmp_path: Path, collector_restored: tuple[int, int, int]
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'fhir.db'}",
        security_enabled=False,
        deadline_sweep_seconds=0,
        index_backlog_seconds=0,
    )
    frozen, threshold = _started(create_app(settings))  # the application starts its server
    assert frozen > 10_000  # the models, the search parameters, ...
    assert threshold == (collector.YOUNG_THRESHOLD, *collector_restored[1:])


def test_a_given_server_leaves_the_collector_as_it_was(
    tmp_path: Path, collector_restored: tuple[int, int, int]
) -> None:
    """Tests and hosts that give the application its server keep their own settings."""
    server = make_server(f"sqlite:///{tmp_path / 'fhir.db'}")
    try:
        assert _started(create_app(server=server)) == (0, collector_restored)
    finally:
        server.close()
