"""The hospital's ADT messages start the pathways: the HL7 v2 door and the pathway engine on one
server, on SQLite and PostgreSQL. The hospital sends its messages over a real MLLP socket; the
outbox runs when the test says, as a worker would after each message's commit; what the CPTS
sees is read over HTTP. An admission tells the patient's care team; a discharge (A03) whose DG1
says heart failure (I50.x) starts the heart-failure pathway beside the discharge pathway, any
other discharge the discharge pathway alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.hl7v2.receiver import Receiver
from adapters.hl7v2.settings import Hl7v2Settings
from tests.adapters.hl7v2.conftest import Door, Listener
from tests.adapters.hl7v2.hospital import Engine
from tests.adapters.hl7v2.messages import DUPONT, INS_TEST, IPP_SYSTEM, MARTIN, adt
from tests.conftest import LiveServer
from tests.pathways.builders import (
    PATIENT,
    C,
    created,
    failed_events,
    ins_patient,
    practitioner,
)
from tests.pathways.test_triggers import TEAM, care_team, pathways

# The discharge of the A03s, 20250307163000: HL7 times without an offset are Paris time.
DISCHARGE = "2025-03-07T16:30:00+01:00"


@pytest.fixture(scope="module")
def listener(pathway_live: LiveServer) -> Iterator[Listener]:
    """An MLLP listener on the server that runs the pathway engine."""
    listener = Listener(Receiver(pathway_live.server, Hl7v2Settings()))
    yield listener
    listener.stop()


@pytest.fixture
def door(api: httpx.Client, listener: Listener, pathway_live: LiveServer) -> Iterator[Door]:
    """The door of a server with the pathway engine, on an empty database holding the pathway
    definitions (`api`)."""
    engine = Engine(listener.port)
    yield Door(pathway_live.server, listener.server.receiver, listener.port, api, engine)
    engine.close()


def run_outbox(door: Door) -> None:
    """Handle the events of the messages received, as a worker would; none may fail."""
    door.server.dispatcher().run_once()
    assert failed_events(door.server) == []


def stay_of(door: Door, patient: str) -> dict[str, Any]:
    (stay,) = door.search("Encounter", patient=patient)
    return stay


def careplan(door: Door, patient: str, pathway: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The patient's CarePlan of a pathway and its step Tasks."""
    plan = door.one("CarePlan", patient=patient, pathway=f"{C}/CodeSystem/pathway|{pathway}")
    tasks = door.search(
        "Task",
        **{"based-on": f"CarePlan/{plan['id']}", "code": f"{C}/CodeSystem/pathway-step|"},
        _count="100",
    )
    return plan, tasks


def test_an_a03_with_a_heart_failure_dg1_starts_the_heart_failure_pathway(door: Door) -> None:
    """Mme Dupont is known to the CPTS (her INS validated) with her care team before the
    hospital admits her on Monday 3 March 2025 and discharges her on Friday 7 March."""
    created(
        door.fhir,
        practitioner("gp-1", "10000000011", "Martin", "Claire"),
        practitioner("pharmacist-1", "10000000029", "Petit", "Louis"),
        practitioner("idel-1", "10000000037", "Bernard", "Sophie"),
        practitioner("coordinator-1", "10000000045", "Durand", "Anne"),
        ins_patient(
            "pat-1", "Dupont", "Hélène", "1948-03-12", DUPONT.ins, INS_TEST, "INS-NIR-TEST"
        ),
        care_team(),
    )

    assert door.send(adt("A01", "1", DUPONT, movement="M1", when="20250303090000")).code == "AA"
    run_outbox(door)
    # The door found her by her INS; each professional of her care team hears of the admission.
    assert [p["id"] for p in door.search("Patient")] == ["pat-1"]
    stay = stay_of(door, PATIENT)
    notices = door.search("Communication", patient=PATIENT)
    assert sorted(n["recipient"][0]["reference"] for n in notices) == sorted(TEAM.values())
    for notice in notices:
        assert notice["encounter"] == {"reference": f"Encounter/{stay['id']}"}
        assert notice["payload"][0]["contentString"] == (
            "Hospitalisation : admission le 03/03/2025 à 09:00."
        )
    assert pathways(door.fhir) == {}  # an admission starts no pathway

    discharge = adt(
        "A03",
        "2",
        DUPONT,
        movement="M2",
        when="20250307163000",
        diagnoses=(("I500", "Insuffisance cardiaque congestive"),),
    )
    assert door.send(discharge).code == "AA"
    run_outbox(door)

    assert pathways(door.fhir) == {"heart-failure": 1, "hospital-discharge": 1}
    stay = stay_of(door, PATIENT)
    assert stay["status"] == "finished"
    hf, hf_tasks = careplan(door, PATIENT, "heart-failure")
    hd, hd_tasks = careplan(door, PATIENT, "hospital-discharge")
    for plan, tasks in ((hf, hf_tasks), (hd, hd_tasks)):
        assert plan["status"] == "active"
        assert plan["encounter"] == {"reference": f"Encounter/{stay['id']}"}
        assert plan["period"] == {"start": DISCHARGE}
        assert {f"Task/{t['id']}" for t in tasks} == {
            a["reference"]["reference"] for a in plan["activity"]
        }
    # No NYHA class recorded: 15 heart-failure steps (no two-weekly visits); 4 discharge steps
    # (not a complex discharge).
    assert len(hf_tasks) == 15 and len(hd_tasks) == 4
    by_step = {t["code"]["coding"][0]["code"]: t for t in hf_tasks + hd_tasks}
    gp_visit = by_step["heart-failure.gp-visit"]
    assert gp_visit["owner"] == {"reference": TEAM["gp"]}
    assert gp_visit["restriction"]["period"]["end"] == "2025-03-14T23:59:59+01:00"  # 7 d
    # The discharge letter is the hospital's, the stay's service provider.
    letter = by_step["hospital-discharge.discharge-letter"]
    assert letter["owner"]["reference"] == stay["serviceProvider"]["reference"]


def test_an_a03_without_heart_failure_starts_the_discharge_pathway_alone(door: Door) -> None:
    """M. Martin, unknown to the CPTS and without a care team: the door creates him; nobody is
    told of the admission; his discharge after a pneumonia starts the discharge pathway."""
    assert door.send(adt("A01", "1", MARTIN, movement="M1", when="20250303090000")).code == "AA"
    run_outbox(door)
    patient = f"Patient/{door.one('Patient', identifier=f'{IPP_SYSTEM}|{MARTIN.ipp}')['id']}"
    assert door.search("Communication", patient=patient) == []

    discharge = adt(
        "A03",
        "2",
        MARTIN,
        movement="M2",
        when="20250307163000",
        diagnoses=(("J189", "Pneumopathie, sans précision"),),
    )
    assert door.send(discharge).code == "AA"
    run_outbox(door)
    assert pathways(door.fhir, patient) == {"hospital-discharge": 1}
    plan, tasks = careplan(door, patient, "hospital-discharge")
    assert plan["period"] == {"start": DISCHARGE}
    assert len(tasks) == 4
    # Nobody holds the roles: the steps wait for professionals of the CPTS to claim them, but
    # the letter, which is the hospital's.
    assert [t["code"]["coding"][0]["code"] for t in tasks if "owner" in t] == [
        "hospital-discharge.discharge-letter"
    ]
