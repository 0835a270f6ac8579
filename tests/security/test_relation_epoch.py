"""Each process keeps a professional's patients between requests (fhir_server.security
.relations), valid while the relation epoch is unchanged. These tests change the relation from
*another* server on the same database, as a second worker or the pathway worker would, and
from this one, and check that the next request of the first server sees the change; and that
what does not change a relation (a Task's status) leaves the epoch alone."""

from __future__ import annotations

import httpx

from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.security.relations import epoch
from fhir_server.server import Server
from fhir_server.settings import Settings
from tests.conftest import LiveServer
from tests.security import cpts
from tests.security.conftest import AsRole, readable


def other_process(live: LiveServer) -> Server:
    """A second server on the same database, with security off like a pathway worker."""
    return Server(
        Settings(database_url=live.server.settings.database_url, security_enabled=False),
        load_plugins=False,
        load_conformance=False,
    )


def current_epoch(live: LiveServer) -> str:
    with live.server.database.transaction(write=False) as conn:
        return epoch(conn)


def test_a_relation_changed_elsewhere_applies_to_the_next_request(
    as_role: AsRole, secure_live: LiveServer
) -> None:
    idel = as_role("idel")
    assert readable(idel, "Patient/A", "Observation/obs-A")  # kept now
    worker = other_process(secure_live)
    try:
        team = cpts.care_team("ct-A", "A", [cpts.PRACTITIONER["gp"]])  # the nurse leaves
        put = Interaction(Kind.UPDATE, "CareTeam", "ct-A", resource=team)
        assert worker.engine.execute(put, Context(source="worker")).status == 200
    finally:
        worker.close()
    assert not readable(idel, "Patient/A", "Observation/obs-A")


def test_a_tasks_status_leaves_the_epoch_alone_its_owner_does_not(
    as_role: AsRole, secure_live: LiveServer, hospital: httpx.Client
) -> None:
    task = hospital.get("/Task/task-B").json()
    before = current_epoch(secure_live)
    response = hospital.put("/Task/task-B", json={**task, "status": "accepted"})
    assert response.status_code == 200, response.text
    assert current_epoch(secure_live) == before
    moved = {**response.json(), "owner": {"reference": cpts.PRACTITIONER["gp"]}}
    assert hospital.put("/Task/task-B", json=moved).status_code == 200
    assert current_epoch(secure_live) != before
    assert readable(as_role("gp"), "Patient/B")  # the new owner, at once


def test_visibility_condition_is_reused_for_the_same_relation_only() -> None:
    """The condition built from a kept relation is reused while the very same lists are
    kept; lists read again (a new epoch), even equal ones, get their own."""
    from fhir_server.security.access import _Built

    allowed, denied = ["p1", "p2"], []
    built = _Built()
    first = built.belongs("Observation", allowed, denied)
    assert built.belongs("Observation", allowed, denied) is first
    assert built.belongs("Observation", list(allowed), denied) is not first
    assert built.belongs("Task", allowed, denied) is not first
    bounded = _Built(size=2)
    first = bounded.belongs("Observation", allowed, denied)
    bounded.belongs("Task", allowed, denied)
    bounded.belongs("Encounter", allowed, denied)  # the least recently used goes
    assert bounded.belongs("Observation", allowed, denied) is not first
