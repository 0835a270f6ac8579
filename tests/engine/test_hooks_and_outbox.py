"""The interaction pipeline's hook points and the transactional outbox, through the engine
(the same code every door uses)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from fhir_server.engine.hooks import HookPoint
from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.errors import FhirError
from fhir_server.formats.json_format import loads
from fhir_server.outbox import OutboxEvent
from fhir_server.server import Server
from fhir_server.storage.schema import OutboxRow
from tests.conftest import BACKENDS, database_url, make_server, wipe
from tests.rest.resources import patient


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    url = database_url(request.param, request, tmp_path_factory.mktemp("hooks"))
    server = make_server(url)
    yield server
    server.close()


@pytest.fixture
def engine_server(server: Server) -> Iterator[Server]:
    wipe(server)
    yield server
    server.hooks._hooks.clear()
    server.consumers.clear()
    server.engine.outbox_consumers.clear()


def create(server: Server, resource: dict) -> dict:
    outcome = server.engine.execute(
        Interaction(Kind.CREATE, resource["resourceType"], resource=resource), Context()
    )
    return loads(outcome.body)


def outbox_rows(server: Server) -> list[tuple]:
    table = OutboxRow.__table__
    with server.database.transaction(write=False) as conn:
        return list(
            conn.execute(
                select(
                    table.c.consumer,
                    table.c.interaction,
                    table.c.resource_type,
                    table.c.version,
                    table.c.done_at.is_not(None),
                ).order_by(table.c.pk)
            )
        )


class Recorder:
    """An outbox consumer that records events, and writes a resource for each Patient."""

    def __init__(self, server: Server, fail_times: int = 0) -> None:
        self.name = "recorder"
        self.resource_types: frozenset[str] | None = None
        self.server = server
        self.events: list[OutboxEvent] = []
        self.fail_times = fail_times

    def handle(self, event: OutboxEvent, uow, context: Context) -> None:
        self.events.append(event)
        if event.resource_type == "Patient":
            self.server.engine.run(
                uow,
                Interaction(
                    Kind.CREATE,
                    "Flag",
                    resource={
                        "resourceType": "Flag",
                        "status": "active",
                        "code": {"text": "seen"},
                        "subject": {"reference": f"Patient/{event.resource_id}"},
                    },
                ),
                context,
            )
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("consumer failure")


def test_hook_points_run_in_order(engine_server: Server) -> None:
    calls: list[str] = []
    hooks = engine_server.hooks
    hooks.register(HookPoint.BEFORE_INTERACTION, lambda ctx, ix: calls.append(f"before:{ix.kind}"))
    hooks.register(
        HookPoint.BEFORE_STORAGE,
        lambda ctx, change, uow: calls.append(f"storage:{change.interaction}"),
    )
    hooks.register(
        HookPoint.AFTER_COMMIT, lambda ctx, changes: calls.append(f"commit:{len(changes)}")
    )
    created = create(engine_server, patient())
    engine_server.engine.execute(Interaction(Kind.READ, "Patient", created["id"]), Context())
    assert calls == ["before:create", "storage:create", "commit:1", "before:read"]


def test_before_storage_sees_previous_and_can_change_the_resource(engine_server: Server) -> None:
    seen = []

    def tag(ctx, change, uow):
        seen.append(change.previous and change.previous["gender"])
        change.resource.setdefault("meta", {})["tag"] = [{"code": "checked"}]

    engine_server.hooks.register(HookPoint.BEFORE_STORAGE, tag)
    created = create(engine_server, patient())
    updated = engine_server.engine.execute(
        Interaction(Kind.UPDATE, "Patient", created["id"], resource={**created, "gender": "male"}),
        Context(),
    )
    assert seen == [None, "female"]
    assert b'"tag":[{"code":"checked"}]' in updated.body


def test_refusal_before_storage_rolls_back_everything(engine_server: Server) -> None:
    engine_server.add_outbox_consumer(Recorder(engine_server))

    def refuse(ctx, change, uow):
        raise FhirError.of(422, "business-rule", "refused")

    engine_server.hooks.register(HookPoint.BEFORE_STORAGE, refuse)
    with pytest.raises(FhirError):
        create(engine_server, patient())
    with engine_server.database.transaction(write=False) as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM resource").scalar() == 0
    assert outbox_rows(engine_server) == []


def test_outbox_is_written_with_the_change_and_consumed_once(engine_server: Server) -> None:
    recorder = Recorder(engine_server)
    engine_server.add_outbox_consumer(recorder)
    created = create(engine_server, patient())
    assert outbox_rows(engine_server) == [("recorder", "create", "Patient", 1, False)]

    dispatcher = engine_server.dispatcher()
    assert dispatcher.run_once() == 2  # the Patient, then the Flag the consumer wrote
    assert [(e.resource_type, e.interaction) for e in recorder.events] == [
        ("Patient", "create"),
        ("Flag", "create"),
    ]
    assert recorder.events[0].resource_id == created["id"]
    assert dispatcher.run_once() == 0  # nothing is handled twice
    assert [row[-1] for row in outbox_rows(engine_server)] == [True, True]


def test_a_consumer_gets_rows_only_for_the_types_it_handles(engine_server: Server) -> None:
    recorder = Recorder(engine_server)
    recorder.resource_types = frozenset({"Flag"})
    engine_server.add_outbox_consumer(recorder)
    create(engine_server, patient())
    assert outbox_rows(engine_server) == []  # no row for a Patient
    create(
        engine_server,
        {
            "resourceType": "Flag",
            "status": "active",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p"},
        },
    )
    assert [row[2] for row in outbox_rows(engine_server)] == ["Flag"]


def test_failed_consumer_rolls_back_its_writes_and_retries(engine_server: Server) -> None:
    recorder = Recorder(engine_server, fail_times=1)
    engine_server.add_outbox_consumer(recorder)
    create(engine_server, patient())
    dispatcher = engine_server.dispatcher()
    dispatcher.retry_after = dispatcher.retry_after * 0  # retry at once
    dispatcher.run_once()
    with engine_server.database.transaction(write=False) as conn:
        flags = conn.exec_driver_sql("SELECT count(*) FROM resource WHERE type='Flag'").scalar()
    assert flags == 1  # the failed attempt's Flag was rolled back; the retry wrote one
    table = OutboxRow.__table__
    with engine_server.database.transaction(write=False) as conn:
        patient_row = conn.execute(
            select(table.c.attempts, table.c.last_error).where(table.c.resource_type == "Patient")
        ).one()
    assert patient_row == (2, "RuntimeError")


def test_failed_transaction_writes_no_outbox_rows(engine_server: Server) -> None:
    engine_server.add_outbox_consumer(Recorder(engine_server))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "POST", "url": "Patient"}, "resource": patient()},
            {
                "request": {"method": "POST", "url": "Patient"},
                "resource": patient(birthDate="2026-02-30"),
            },
        ],
    }
    with pytest.raises(FhirError):
        engine_server.engine.execute(Interaction(Kind.TRANSACTION, resource=bundle), Context())
    assert outbox_rows(engine_server) == []
