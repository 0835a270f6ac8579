"""A heart-failure pathway from end to end with security on, each person with a token of their
own, as the CPTS lives it: the coordinator enrols the patient with her care team (one
transaction), the hospital's system sends the finished stay, the pathway starts by itself (the
server's own work), the nurse reads her worklist and completes her first visit, a nurse outside
the care team sees nothing of it, the coordinator follows the pathway and asks for an
indicator, and the auditor finds who accessed the patient's data. The other end-to-end tests
(test_end_to_end.py) check the pathways' numbers with security off; this one checks that the
same journey works, and only for whom it should, with it on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.security.tokens import LocalIssuer
from fhir_server.server import Server
from fhir_server.settings import Settings
from pathways import catalogue
from tests.conftest import BACKENDS, LiveServer, database_url, wipe
from tests.pathways.builders import (
    ORGANIZATION,
    PATIENT,
    complete,
    failed_events,
    ins_patient,
    organization,
    practitioner,
)
from tests.pathways.test_apply import CLASS_III, nyha
from tests.pathways.test_end_to_end import OPEN, PROFESSIONALS
from tests.pathways.test_triggers import ICD10, TEAM, care_team, diagnosis, stay

NURSE, OUTSIDER = TEAM["idel"], "Practitioner/idel-2"


@pytest.fixture(scope="module", params=BACKENDS)
def secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, LocalIssuer]]:
    folder: Path = tmp_path_factory.mktemp(f"secured-{request.param}")
    settings = Settings(
        database_url=database_url(request.param, request, folder),
        auth_local_key=folder / "key.pem",
    )
    server = Server(settings, load_conformance=False)  # security on, every plugin
    wipe(server)
    catalogue.load_definitions(server)
    live = LiveServer(server)
    yield live, LocalIssuer(settings)
    live.stop()
    server.close()


def client(live: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=live.url,
        timeout=30,
        headers={"authorization": f"Bearer {token}", "accept": "application/fhir+json"},
    )


def entries(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


def test_a_pathway_with_a_token_for_everyone(secured: tuple[LiveServer, LocalIssuer]) -> None:
    live, issuer = secured
    user = "user/*.cruds"
    coordinator = client(
        live, issuer.issue("c", ["coordinator"], user, fhir_user=TEAM["coordinator"])
    )
    hospital = client(live, issuer.issue("chu", ["hospital"], "system/*.cruds", client_id="chu"))
    nurse = client(live, issuer.issue("n", ["idel"], user, fhir_user=NURSE))
    outsider = client(live, issuer.issue("o", ["idel"], user, fhir_user=OUTSIDER))
    auditor = client(live, issuer.issue("a", ["auditor"], "user/*.rs", fhir_user="Practitioner/a"))

    # The coordinator keeps the CPTS's directory, then enrols Mme Dupont with her care team.
    directory = [
        organization("cpts-1", "CPTS Lyon Rive Gauche"),
        organization("chu-1", "Hôpital de la Croix-Rousse", finess="690781810"),
        *(practitioner(id_, *identity) for id_, identity in PROFESSIONALS.items()),
        practitioner("idel-2", "10000000136", "Roux", "Anne"),
        {
            "resourceType": "PractitionerRole",
            "id": "coordinator-1-cpts",
            "active": True,
            "practitioner": {"reference": TEAM["coordinator"]},
            "organization": {"reference": ORGANIZATION},
        },
    ]
    for resource in directory:
        response = coordinator.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code == 201, response.text
    patient = ins_patient("pat-1", "Dupont", "Hélène", "1948-03-12", "248036912312345")
    team = {**care_team(**TEAM), "managingOrganization": [{"reference": ORGANIZATION}]}
    enrolment = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in (patient, team)
        ],
    }
    assert coordinator.post("/", json=enrolment).status_code == 200

    # The hospital's system sends the stay; the pathway engine starts the pathways.
    for resource in (
        nyha("nyha-1", PATIENT, "2025-03-06T10:00:00+01:00", CLASS_III),
        diagnosis("hf-1", "enc-1", ICD10, "I50.1"),
        stay(
            "enc-1",
            "finished",
            "2025-02-28T14:00:00+01:00",
            "2025-03-07T16:30:00+01:00",
            diagnosis=[{"condition": {"reference": "Condition/hf-1"}, "rank": 1}],
        ),
    ):
        response = hospital.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code == 201, response.text
    live.server.dispatcher().run_once()
    assert failed_events(live.server) == []

    # The nurse's worklist: her eight weekly visits, with Mme Dupont; she completes the first.
    worklist = {"owner": NURSE, "status": OPEN, "_sort": "due-date", "_include": "Task:patient"}
    found = entries(nurse.get("/Task", params=worklist))
    tasks = [r for r in found if r["resourceType"] == "Task"]
    assert len(tasks) == 8
    assert [r["id"] for r in found if r["resourceType"] == "Patient"] == ["pat-1"]
    done = complete(nurse, tasks[0]["id"], end="2025-03-12T10:00:00+01:00")
    assert done["status"] == "completed"

    # A nurse outside the care team: nothing of Mme Dupont, whatever she asks.
    assert entries(outsider.get("/Task", params=worklist)) == []
    assert outsider.get(f"/{PATIENT}").status_code == 403
    assert outsider.get(f"/Task/{tasks[1]['id']}").status_code == 403
    refused = outsider.put(f"/Task/{tasks[1]['id']}", json={**tasks[1], "status": "accepted"})
    assert refused.status_code == 403

    # The coordinator follows the pathway (the README's view) and asks for an indicator.
    view = {
        "pathway": "heart-failure",
        "status": "active,on-hold",
        "_revinclude": "Task:based-on",
        "_include": "CarePlan:subject",
        "_count": "20",
    }
    plan = entries(coordinator.get("/CarePlan", params=view))
    assert {r["resourceType"] for r in plan} == {"CarePlan", "Task", "Patient"}
    assert sum(r["resourceType"] == "Task" for r in plan) == 23
    report = coordinator.get(
        "/Measure/heart-failure-inclusions/$evaluate-measure",
        params={"periodStart": "2025", "periodEnd": "2025", "organization": ORGANIZATION},
    )
    assert report.status_code == 200, report.text
    assert report.json()["group"][0]["population"][0]["count"] == 1

    # The auditor: who touched Mme Dupont's data, the refusals included.
    trail = entries(auditor.get("/AuditEvent", params={"patient": PATIENT, "_count": "500"}))
    by = {(e["agent"][0]["who"].get("reference"), e["action"], e["outcome"]) for e in trail}
    assert (NURSE, "R", "0") in by  # her worklist
    assert (NURSE, "U", "0") in by  # her visit, completed
    assert (OUTSIDER, "R", "4") in by  # refused reads
    assert (OUTSIDER, "U", "4") in by  # the refused update
    assert (TEAM["coordinator"], "C", "0") in by  # the enrolment
    assert (TEAM["coordinator"], "R", "0") in by  # the view, and the indicator's reads
    indicator = entries(
        auditor.get("/AuditEvent", params={"agent": TEAM["coordinator"], "action": "E"})
    )
    names = [x["name"] for e in indicator for x in e["entity"] if "name" in x]
    assert names == ["$evaluate-measure"]
    assert all("Dupont" not in str(event) for event in trail)  # never a resource's content
