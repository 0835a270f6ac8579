"""The index backlog (docs/engine-and-storage.md, "The index backlog"): the AuditEvents the
server stores for itself are indexed behind their write, in batches, and every search that
could read them finds each one committed before it began, whichever way it reaches them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.formats.json_format import loads
from fhir_server.search import backlog as backlog_module
from fhir_server.search.backlog import Backlog, index_backlog, reads_behind
from fhir_server.search.reindex import reindex
from fhir_server.server import Server
from fhir_server.storage.schema import INDEX_TABLES
from tests.conftest import LiveServer, make_server, wipe
from tests.search.data import load


def _event(patient: str, action: str = "R") -> dict[str, Any]:
    return {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
        },
        "action": action,
        "recorded": "2026-11-24T09:00:00Z",
        "agent": [{"requestor": True, "who": {"reference": "Practitioner/n1"}}],
        "source": {"observer": {"display": "CPTS FHIR server"}},
        "entity": [{"what": {"reference": patient}}],
    }


def _append(server: Server, *events: dict[str, Any]) -> list[str]:
    """Store `events` as the server stores its audit trail."""
    engine = server.engine
    with engine.unit_of_work(write=True) as uow:
        return [engine.append(uow, "AuditEvent", event) for event in events]


def _rows(server: Server) -> int:
    """Index rows of AuditEvents, every table."""
    with server.database.transaction(write=False) as conn:
        return sum(
            conn.execute(
                select(func.count()).select_from(t.__table__).where(t.type == "AuditEvent")
            ).scalar_one()
            for t in INDEX_TABLES
        )


def _expected_rows(server: Server, ids: list[str]) -> int:
    """The index rows of the stored AuditEvents `ids`, as a write would have written them."""
    total = 0
    for id_ in ids:
        with server.engine.unit_of_work(write=False) as uow:
            stored = uow.repository.read("AuditEvent", id_)
        assert stored is not None and stored.body is not None
        rows = server.search.rows("AuditEvent", loads(stored.body))
        total += sum(len(r) for r in rows.values())
    return total


@pytest.fixture
def clinic(fhir: httpx.Client) -> Iterator[httpx.Client]:
    load(
        fhir,
        [
            {"resourceType": "Patient", "id": "p1", "name": [{"family": "Martin"}]},
            {"resourceType": "Patient", "id": "p2", "name": [{"family": "Bernard"}]},
            {"resourceType": "Practitioner", "id": "n1"},
        ],
    )
    yield fhir


def test_an_appended_event_waits_in_the_backlog(clinic: httpx.Client, live: LiveServer) -> None:
    before = _rows(live.server)
    _append(live.server, _event("Patient/p1"), _event("Patient/p2"))
    assert live.server.backlog.waiting() == 2
    assert _rows(live.server) == before  # nothing indexed by the write itself


def _ids(response: httpx.Response, type_: str = "AuditEvent") -> set[str]:
    assert response.status_code == 200, response.text
    return {
        e["resource"]["id"]
        for e in response.json().get("entry", [])
        if e["resource"]["resourceType"] == type_
    }


# Each way a search reaches AuditEvents' index rows, and how to read what it found of them.
_WAYS: dict[str, tuple[str, dict[str, str], str]] = {
    "type": ("/AuditEvent", {"patient": "Patient/p1"}, "AuditEvent"),
    "system": ("/", {"_type": "AuditEvent", "entity": "Patient/p1"}, "AuditEvent"),
    "system, every type": ("/", {"_lastUpdated": "gt2000-01-01"}, "AuditEvent"),
    "compartment": ("/Patient/p1/AuditEvent", {}, "AuditEvent"),
    "_revinclude": ("/Patient", {"_id": "p1", "_revinclude": "AuditEvent:entity"}, "AuditEvent"),
    "_revinclude=*": ("/Patient", {"_id": "p1", "_revinclude": "*"}, "AuditEvent"),
    "_has": ("/Patient", {"_has:AuditEvent:entity:action": "C"}, "Patient"),
    "chain": ("/AuditEvent", {"entity:Patient.family": "Martin"}, "AuditEvent"),
    "_summary=count": ("/AuditEvent", {"entity": "Patient/p1", "_summary": "count"}, "total"),
}


@pytest.mark.parametrize("way", list(_WAYS))
def test_a_search_finds_the_events_committed_before_it(
    clinic: httpx.Client, live: LiveServer, way: str
) -> None:
    path, params, read = _WAYS[way]
    [event] = _append(live.server, _event("Patient/p1", action="C"))
    response = clinic.get(path, params=params)
    if read == "total":
        assert response.json()["total"] == 1
    elif read == "Patient":
        assert _ids(response, "Patient") == {"p1"}
    else:
        assert _ids(response) == {event}
    assert live.server.backlog.waiting() == 0


def test_a_search_of_other_types_leaves_the_backlog(clinic: httpx.Client, live: LiveServer) -> None:
    _append(live.server, _event("Patient/p1"))
    assert _ids(clinic.get("/Patient", params={"family": "Martin"}), "Patient") == {"p1"}
    assert live.server.backlog.waiting() == 1


def test_indexing_writes_the_rows_a_write_would(clinic: httpx.Client, live: LiveServer) -> None:
    before = _rows(live.server)
    ids = _append(live.server, *[_event(f"Patient/p{1 + i % 2}") for i in range(7)])
    assert index_backlog(live.server.engine) == 7
    assert index_backlog(live.server.engine) == 0
    assert _rows(live.server) - before == _expected_rows(live.server, ids)


def test_concurrent_indexers_write_each_row_once(clinic: httpx.Client, live: LiveServer) -> None:
    before = _rows(live.server)
    ids = _append(live.server, *[_event(f"Patient/p{1 + i % 2}") for i in range(1200)])
    counts: list[int] = []
    errors: list[BaseException] = []

    def index() -> None:
        try:
            counts.append(index_backlog(live.server.engine))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=index) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert sum(counts) == 1200
    assert live.server.backlog.waiting() == 0
    assert _rows(live.server) - before == _expected_rows(live.server, ids[:1]) * 1200


def test_reindexing_takes_events_out_of_the_backlog(clinic: httpx.Client, live: LiveServer) -> None:
    before = _rows(live.server)
    ids = _append(live.server, _event("Patient/p1"), _event("Patient/p2"))
    assert reindex(live.server, types=["AuditEvent"]) == 2
    assert live.server.backlog.waiting() == 0
    assert index_backlog(live.server.engine) == 0
    assert _rows(live.server) - before == _expected_rows(live.server, ids)


def test_the_background_work_indexes_the_backlog(live: LiveServer) -> None:
    server = make_server(live.server.settings.database_url, index_backlog_seconds=0.05)
    try:
        wipe(server)
        _append(server, _event("Patient/p1"))
        server.start_outbox_worker()
        deadline = time.monotonic() + 20
        while server.backlog.waiting() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.backlog.waiting() == 0
        assert _rows(server) > 0
    finally:
        server.close()


def test_a_busy_server_indexes_in_the_background_only_a_long_backlog(
    clinic: httpx.Client, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = Backlog(live.server.engine, idle_seconds=60)
    _append(live.server, _event("Patient/p1"), _event("Patient/p2"))
    waiting.before_transaction(Context(), [Interaction(Kind.READ, "Patient", "p1")])
    assert waiting.in_background() == 0  # busy a moment ago, two events waiting
    assert live.server.backlog.waiting() == 2
    monkeypatch.setattr(backlog_module, "LIMIT", 1)
    assert waiting.in_background() == 2
    assert live.server.backlog.waiting() == 0


def test_the_background_gives_way_to_a_request(
    clinic: httpx.Client, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle when it began, the indexer stops after the batch during which a request came,
    unless more than LIMIT events wait."""
    waiting = Backlog(live.server.engine, idle_seconds=0)
    _append(live.server, *[_event("Patient/p1") for _ in range(4)])
    monkeypatch.setattr(backlog_module, "BACKGROUND_BATCH", 1)

    def a_request_comes(_seconds: float) -> None:  # during the rest after each batch
        waiting.before_transaction(Context(), [Interaction(Kind.READ, "Patient", "p1")])

    monkeypatch.setattr(
        backlog_module, "time", SimpleNamespace(monotonic=time.monotonic, sleep=a_request_comes)
    )
    assert waiting.in_background() == 1
    assert live.server.backlog.waiting() == 3
    monkeypatch.setattr(backlog_module, "LIMIT", 1)
    assert waiting.in_background() == 2  # down to LIMIT, then gives way
    assert live.server.backlog.waiting() == 1


@pytest.mark.parametrize(
    ("interaction", "reads"),
    [
        (Interaction(Kind.SEARCH_TYPE, "AuditEvent"), True),
        (Interaction(Kind.SEARCH_SYSTEM, params=[("_type", "Patient,AuditEvent")]), True),
        (Interaction(Kind.SEARCH_SYSTEM, params=[("_id", "x")]), True),  # every type
        (
            Interaction(
                Kind.SEARCH_TYPE, "Patient", params=[("_has:AuditEvent:entity:action", "C")]
            ),
            True,
        ),
        (
            Interaction(Kind.SEARCH_TYPE, "Patient", params=[("_revinclude", "AuditEvent:entity")]),
            True,
        ),
        (Interaction(Kind.SEARCH_TYPE, "Patient", params=[("_revinclude:iterate", "*")]), True),
        (Interaction(Kind.SEARCH_TYPE, "Task", params=[("focus.identifier", "x")]), True),
        (Interaction(Kind.CREATE, "AuditEvent", if_none_exist=[("action", "C")]), True),
        (Interaction(Kind.DELETE, "AuditEvent", params=[("action", "C")]), True),
        (Interaction(Kind.SEARCH_SYSTEM, params=[("_type", "Patient,Task")]), False),
        (Interaction(Kind.SEARCH_TYPE, "Task", params=[("owner", "Practitioner/n1")]), False),
        (Interaction(Kind.SEARCH_TYPE, "Patient", params=[("_revinclude", "Task:patient")]), False),
        (Interaction(Kind.CREATE, "AuditEvent"), False),
        (Interaction(Kind.READ, "AuditEvent", "a1"), False),
        (Interaction(Kind.HISTORY_TYPE, "AuditEvent", params=[("_count", "5")]), False),
        (Interaction(Kind.UPDATE, "Patient", "p1", params=[("x", "AuditEvent")]), False),
    ],
)
def test_which_interactions_read_behind(interaction: Interaction, reads: bool) -> None:
    assert reads_behind(interaction) is reads
