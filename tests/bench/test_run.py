"""The benchmark run's databases: each run measures a copy of the loaded CPTS, so that what a
run adds (patients, observations, audit events) is not measured by the next."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from bench.run import beside, working_copy
from fhir_server.engine.engine import Engine
from fhir_server.engine.interaction import Context, Interaction, Kind
from tests.conftest import BACKENDS, make_server


@pytest.fixture(params=BACKENDS)
def loaded_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of its own holding one patient, as `bench.load` leaves one: no server
    connected to it (PostgreSQL copies only a database nobody is connected to)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / '1k.db'}"
    else:
        url = beside(request.getfixturevalue("postgres_url"), "loaded")
    server = make_server(url)
    _create_patient(server.engine, "Martin")
    server.close()
    return url


def _create_patient(engine: Engine, family: str) -> None:
    interaction = Interaction(
        Kind.CREATE, "Patient", resource={"resourceType": "Patient", "name": [{"family": family}]}
    )
    assert engine.execute(interaction, Context(base_url="http://test")).status == 201


def _families(url: str) -> list[str]:
    server = make_server(url)
    try:
        with server.database.transaction(write=False) as conn:
            rows = conn.execute(
                text(
                    "SELECT value_exact FROM search_string WHERE type = 'Patient' "
                    "AND param = 'family' ORDER BY value_exact"
                )
            )
            return [row[0] for row in rows]
    finally:
        server.close()


def test_each_run_works_on_a_fresh_copy_of_the_loaded_database(loaded_url: str) -> None:
    copy = working_copy(loaded_url)
    assert copy != loaded_url
    assert _families(copy) == ["Martin"]

    server = make_server(copy)
    _create_patient(server.engine, "Bernard")
    server.close()
    assert _families(copy) == ["Bernard", "Martin"]
    assert _families(loaded_url) == ["Martin"], "a run changed the loaded database"

    assert working_copy(loaded_url) == copy
    assert _families(copy) == ["Martin"], "the next run measured what the last one added"


def test_a_side_database_is_empty_whatever_it_held(loaded_url: str) -> None:
    side = beside(loaded_url, "side")
    server = make_server(side)
    _create_patient(server.engine, "Petit")
    server.close()
    assert _families(beside(loaded_url, "side")) == []
