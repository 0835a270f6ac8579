"""The references of the audit trail live in an index table of their own
(`search_audit_reference`): every way of searching by reference reaches them as it reaches
the clinical ones, alone or beside other types, and a rewritten AuditEvent is indexed anew.
An AuditEvent's `patient` (R4: its agents' and its entities' Patients) shares the rows of
`entity` for the Patient entities, indexed once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from fhir_server.storage.schema import AuditReferenceIndex, ReferenceIndex, ResourceRow
from tests.conftest import LiveServer
from tests.search.data import found, load, refs, search


def _event(
    id_: str, patient: str, action: str = "R", agent: str = "Practitioner/n1"
) -> dict[str, Any]:
    return {
        "resourceType": "AuditEvent",
        "id": id_,
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
        },
        "action": action,
        "recorded": "2026-11-24T09:00:00Z",
        "agent": [{"requestor": True, "who": {"reference": agent}}],
        "source": {"observer": {"display": "CPTS FHIR server"}},
        "entity": [{"what": {"reference": patient}}],
    }


@pytest.fixture
def trail(fhir: httpx.Client) -> Iterator[httpx.Client]:
    load(
        fhir,
        [
            {"resourceType": "Patient", "id": "p1", "name": [{"family": "Martin"}]},
            {"resourceType": "Patient", "id": "p2", "name": [{"family": "Bernard"}]},
            {"resourceType": "Practitioner", "id": "n1"},
            {
                "resourceType": "Observation",
                "id": "o1",
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": "Patient/p1"},
            },
            _event("a1", "Patient/p1"),
            _event("a2", "Patient/p2", action="C"),
            # A patient's own app reading an observation: the patient is the agent.
            _event("a3", "Observation/o1", agent="Patient/p2"),
            _event("a4", "Practitioner/n1"),  # no patient at all
        ],
    )
    yield fhir


def test_rows_are_in_the_audit_table_only(trail: httpx.Client, live: LiveServer) -> None:
    with live.server.database.transaction(write=False) as conn:
        clinical, audit = (
            dict(conn.execute(select(t.type, func.count()).group_by(t.type)).all())
            for t in (ReferenceIndex.__table__.c, AuditReferenceIndex.__table__.c)
        )
    assert "AuditEvent" not in clinical and clinical["Observation"] > 0
    assert set(audit) == {"AuditEvent"}


def test_patient_entities_are_indexed_once(trail: httpx.Client, live: LiveServer) -> None:
    t, r = AuditReferenceIndex.__table__.c, ResourceRow.__table__.c
    stmt = select(t.param, t.target_type, t.target_id).where(
        t.resource_pk.in_(select(r.pk).where(r.id == "a1"))
    )
    with live.server.database.transaction(write=False) as conn:
        a1 = sorted(tuple(row) for row in conn.execute(stmt))
    assert a1 == [("agent", "Practitioner", "n1"), ("entity", "Patient", "p1")]
    assert found(trail, "/AuditEvent", {"patient": "Patient/p2"}) == {"a2", "a3"}
    assert found(trail, "/AuditEvent", {"entity": "Patient/p2"}) == {"a2"}
    assert found(trail, "/AuditEvent", {"patient:missing": "true"}) == {"a4"}


def test_criteria_chains_and_has(trail: httpx.Client) -> None:
    assert found(trail, "/AuditEvent", {"patient": "Patient/p1"}) == {"a1"}
    assert found(trail, "/AuditEvent", {"entity": "Patient/p2"}) == {"a2"}
    assert found(trail, "/AuditEvent", {"agent": "Practitioner/n1"}) == {"a1", "a2", "a4"}
    assert found(trail, "/AuditEvent", {"patient.family": "Bernard"}) == {"a2", "a3"}
    assert found(trail, "/Patient", {"_has:AuditEvent:patient:action": "C"}) == {"p2"}
    assert found(trail, "/Patient", {"_has:AuditEvent:patient:action": "R"}) == {"p1", "p2"}


def test_include_and_revinclude(trail: httpx.Client) -> None:
    included = search(trail, "/AuditEvent", {"_id": "a1", "_include": "AuditEvent:patient"})
    assert refs(included, "include") == ["Patient/p1"]
    rev = search(trail, "/Patient", {"_id": "p1", "_revinclude": "AuditEvent:patient"})
    assert refs(rev, "include") == ["AuditEvent/a1"]
    rev = search(trail, "/Patient", {"_id": "p2", "_revinclude": "AuditEvent:patient"})
    assert set(refs(rev, "include")) == {"AuditEvent/a2", "AuditEvent/a3"}
    own = search(trail, "/AuditEvent", {"_id": "a3", "_include": "AuditEvent:patient"})
    assert refs(own, "include") == ["Patient/p2"]
    every = search(trail, "/Patient", {"_id": "p1", "_revinclude": "*"})
    assert set(refs(every, "include")) == {"AuditEvent/a1", "Observation/o1"}
    wildcard = search(trail, "/", {"_type": "AuditEvent,Observation", "_include": "*"})
    assert set(refs(wildcard, "include")) == {"Patient/p1", "Patient/p2", "Practitioner/n1"}


def test_search_over_the_trail_and_other_types(trail: httpx.Client) -> None:
    params = {"_type": "AuditEvent,Observation", "patient": "Patient/p1"}
    assert set(refs(search(trail, "/", params))) == {"AuditEvent/a1", "Observation/o1"}
    ordered = search(trail, "/", {"_type": "AuditEvent,Observation", "_sort": "-patient"})
    assert refs(ordered)[:2] == ["AuditEvent/a2", "AuditEvent/a3"]  # p2 first, descending
    assert refs(ordered)[-1] == "AuditEvent/a4"  # no patient: last


def test_rewritten_event_is_indexed_anew(trail: httpx.Client) -> None:
    assert trail.put("/AuditEvent/a1", json=_event("a1", "Patient/p2")).status_code == 200
    assert found(trail, "/AuditEvent", {"patient": "Patient/p1"}) == set()
    assert found(trail, "/AuditEvent", {"patient": "Patient/p2"}) == {"a1", "a2", "a3"}
