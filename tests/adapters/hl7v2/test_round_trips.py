"""ADT round trips over MLLP: admissions, transfers, discharges, their cancellations and
merges, in order and out of order; each message sent again changes nothing."""

from __future__ import annotations

from tests.adapters.hl7v2.conftest import Door
from tests.adapters.hl7v2.hospital import Ack
from tests.adapters.hl7v2.messages import (
    DUPONT,
    IPP_SYSTEM,
    LOCAL_SYSTEM,
    MARTIN,
    Person,
    adt,
)

VISIT = f"{LOCAL_SYSTEM}|V100"
MOVEMENT = "https://cpts-fhir.org/fhir/StructureDefinition/encounter-movement"


def sent_again_changes_nothing(door: Door, message: bytes, first: Ack) -> None:
    """The same message sent twice more: the same ACK, not one new version."""
    before = door.versions()
    for _ in range(2):
        again = door.send(message)
        assert again.raw == first.raw
    assert door.versions() == before


def send(door: Door, message: bytes) -> Ack:
    ack = door.send(message)
    assert ack.code == "AA", ack.raw
    sent_again_changes_nothing(door, message, ack)
    return ack


def movements(encounter: dict) -> list[tuple[str, str, str]]:
    found = []
    for extension in encounter.get("extension", []):
        if extension["url"] == MOVEMENT:
            parts = {p["url"]: p for p in extension["extension"]}
            found.append(
                (
                    parts["identifier"]["valueIdentifier"]["value"],
                    parts["event"]["valueCoding"]["code"],
                    parts["status"]["valueCode"],
                )
            )
    return found


def test_admission_then_discharge_of_a_heart_failure(door: Door) -> None:
    send(door, adt("A01", "1", movement="M1", when="20240306110000"))
    discharge = adt(
        "A03",
        "2",
        movement="M2",
        when="20240312160000",
        disposition="8",
        diagnoses=(("I500", "Insuffisance cardiaque congestive"),),
    )
    send(door, discharge)
    encounter = door.one("Encounter", identifier=VISIT)
    assert encounter["status"] == "finished"
    assert encounter["class"]["code"] == "IMP"
    assert encounter["period"] == {
        "start": "2024-03-06T11:00:00+01:00",
        "end": "2024-03-12T16:00:00+01:00",
    }
    assert encounter["hospitalization"]["dischargeDisposition"] == {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0112", "code": "8"}]
    }
    assert encounter["location"][0]["status"] == "completed"
    assert encounter["location"][0]["period"]["end"] == "2024-03-12T16:00:00+01:00"
    # The diagnosis the heart-failure pathway starts from: I50.x on a finished inpatient stay
    [diagnosis] = encounter["diagnosis"]
    assert diagnosis["use"]["coding"][0]["code"] == "DD"
    condition = door.read(diagnosis["condition"]["reference"])
    assert condition["code"]["coding"] == [
        {
            "system": "http://hl7.org/fhir/sid/icd-10",
            "code": "I50.0",
            "display": "Insuffisance cardiaque congestive",
        }
    ]
    assert condition["subject"] == encounter["subject"]
    assert condition["encounter"] == {"reference": f"Encounter/{encounter['id']}"}
    assert condition["category"][0]["coding"][0]["code"] == "encounter-diagnosis"
    # The same discharge sent again by the engine under a new control id: nothing changes
    before = door.versions()
    resent = adt(
        "A03",
        "3",
        movement="M2",
        when="20240312160000",
        disposition="8",
        diagnoses=(("I500", "Insuffisance cardiaque congestive"),),
    )
    assert door.send(resent).code == "AA"
    assert door.versions() == before


def test_discharge_cancelled_a13_reopens_the_stay(door: Door) -> None:
    send(door, adt("A01", "1", movement="M1"))
    send(door, adt("A03", "2", movement="M2", when="20240312160000", disposition="8"))
    cancel = adt("A13", "3", movement="M2", action="CANCEL", original="A03", when="20240312160000")
    send(door, cancel)
    encounter = door.one("Encounter", identifier=VISIT)
    assert encounter["status"] == "in-progress"
    assert encounter["period"] == {"start": "2024-03-06T11:00:00+01:00"}
    assert "hospitalization" not in encounter
    assert encounter["location"][0]["status"] == "active"
    assert movements(encounter) == [("M1", "A01", "active"), ("M2", "A03", "cancelled")]
    # The cancelled discharge sent again under a new control id stays cancelled
    assert door.send(adt("A03", "4", movement="M2", when="20240312160000")).code == "AA"
    assert door.one("Encounter", identifier=VISIT)["status"] == "in-progress"


def test_cancellation_received_before_the_discharge_it_cancels(door: Door) -> None:
    send(door, adt("A01", "1", movement="M1"))
    send(door, adt("A13", "2", movement="M2", action="CANCEL", original="A03"))
    send(door, adt("A03", "3", movement="M2", when="20240312160000"))
    encounter = door.one("Encounter", identifier=VISIT)
    assert encounter["status"] == "in-progress"
    assert movements(encounter) == [("M1", "A01", "active"), ("M2", "A03", "cancelled")]


def test_admission_cancelled_a11(door: Door) -> None:
    send(door, adt("A01", "1", movement="M1"))
    send(door, adt("A11", "2", movement="M1", action="CANCEL", original="A01"))
    encounter = door.one("Encounter", identifier=VISIT)
    assert encounter["status"] == "cancelled"
    assert movements(encounter) == [("M1", "A01", "cancelled")]


def test_admission_cancelled_without_zbe_cancels_the_latest_admission(door: Door) -> None:
    send(door, adt("A01", "1", movement=None))
    send(door, adt("A11", "2", movement=None, when="20240306120000"))
    assert door.one("Encounter", identifier=VISIT)["status"] == "cancelled"


def test_transfer_a02_then_cancelled_a12(door: Door) -> None:
    send(door, adt("A01", "1", movement="M1", unit=("Cardiologie", "4010")))
    transfer = adt(
        "A02", "2", movement="M2", when="20240307090000", unit=("Soins intensifs", "4020")
    )
    send(door, transfer)
    encounter = door.one("Encounter", identifier=VISIT)
    assert encounter["status"] == "in-progress"
    assert [
        (loc["location"]["display"], loc["status"], loc["period"]) for loc in encounter["location"]
    ] == [
        (
            "Cardiologie",
            "completed",
            {"start": "2024-03-06T11:00:00+01:00", "end": "2024-03-07T09:00:00+01:00"},
        ),
        ("Soins intensifs", "active", {"start": "2024-03-07T09:00:00+01:00"}),
    ]
    assert encounter["location"][1]["location"]["identifier"] == {
        "system": LOCAL_SYSTEM,
        "value": "4020",
    }
    send(door, adt("A12", "3", movement="M2", action="CANCEL", original="A02"))
    encounter = door.one("Encounter", identifier=VISIT)
    assert [(loc["location"]["display"], loc["status"]) for loc in encounter["location"]] == [
        ("Cardiologie", "active")
    ]


def test_pre_admission_a05_then_outpatient_registration_a04(door: Door) -> None:
    send(door, adt("A05", "1", movement="M1", when="20240320080000"))
    encounter = door.one("Encounter", identifier=VISIT)
    assert encounter["status"] == "planned"
    assert encounter["location"][0]["status"] == "planned"
    send(door, adt("A04", "2", movement="M2", when="20240320081500", patient_class="O"))
    encounter = door.one("Encounter", identifier=VISIT)
    assert encounter["status"] == "in-progress"
    assert encounter["class"]["code"] == "AMB"
    assert encounter["period"] == {"start": "2024-03-20T08:15:00+01:00"}


def test_update_a08_changes_the_identity(door: Door) -> None:
    send(door, adt("A01", "1", movement="M1"))
    renamed = Person(**{**DUPONT.__dict__, "family": "DURAND"})
    send(door, adt("A08", "2", person=renamed))
    patient = door.one("Patient", identifier=f"{IPP_SYSTEM}|{DUPONT.ipp}")
    assert patient["name"][0]["family"] == "DURAND"
    assert patient["meta"]["versionId"] == "2"
    assert len(door.search("Encounter")) == 1


def test_provisional_identity_is_matched_by_local_id_and_carries_no_ins(door: Door) -> None:
    provisional = Person(**{**DUPONT.__dict__, "reliability": "PROV"})
    send(door, adt("A01", "1", person=provisional, movement="M1"))
    patient = door.one("Patient", identifier=f"{IPP_SYSTEM}|{DUPONT.ipp}")
    assert [i["system"] for i in patient["identifier"]] == [IPP_SYSTEM]  # no INS
    assert patient["extension"][0]["extension"][0]["valueCoding"]["code"] == "PROV"
    # Validated later: the same patient gets its INS
    send(door, adt("A08", "2", person=DUPONT))
    patient = door.one("Patient", identifier=f"{IPP_SYSTEM}|{DUPONT.ipp}")
    assert {i["system"] for i in patient["identifier"]} == {
        IPP_SYSTEM,
        "urn:oid:1.2.250.1.213.1.4.10",
    }
    assert len(door.search("Patient")) == 1


def test_merge_a40_moves_everything_to_the_surviving_patient(door: Door) -> None:
    duplicate = Person(**{**MARTIN.__dict__, "ins": "", "reliability": "PROV"})
    send(door, adt("A01", "1", person=DUPONT, movement="M1"))
    send(
        door,
        adt(
            "A01",
            "2",
            person=duplicate,
            visit="V200",
            movement="M9",
            diagnoses=(("I10", "Hypertension"),),
        ),
    )
    survivor = door.one("Patient", identifier=f"{IPP_SYSTEM}|{DUPONT.ipp}")
    merged = door.one("Patient", identifier=f"{IPP_SYSTEM}|{MARTIN.ipp}")
    send(door, adt("A40", "3", person=DUPONT, merged=duplicate))
    merged = door.read(f"Patient/{merged['id']}")
    survivor = door.read(f"Patient/{survivor['id']}")
    assert merged["active"] is False
    assert merged["link"] == [
        {"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}
    ]
    assert survivor["link"] == [
        {"other": {"reference": f"Patient/{merged['id']}"}, "type": "replaces"}
    ]
    stay = door.one("Encounter", identifier=f"{LOCAL_SYSTEM}|V200")
    assert stay["subject"] == {"reference": f"Patient/{survivor['id']}"}
    condition = door.read(stay["diagnosis"][0]["condition"]["reference"])
    assert condition["subject"] == {"reference": f"Patient/{survivor['id']}"}
    assert door.search("Encounter", subject=f"Patient/{merged['id']}") == []
    # A later message about the merged patient's local id reaches the surviving patient
    send(door, adt("A03", "4", person=duplicate, visit="V200", movement="M10"))
    assert door.one("Encounter", identifier=f"{LOCAL_SYSTEM}|V200")["status"] == "finished"
    assert len(door.search("Patient", active="true")) == 1
    survivor = door.read(f"Patient/{survivor['id']}")  # its identity is not the merged one's
    assert survivor["name"][0]["family"] == "DUPONT"
    assert survivor["extension"][0]["extension"][0]["valueCoding"]["code"] == "VALI"


def test_movement_updated_z99(door: Door) -> None:
    send(door, adt("A01", "1", movement="M1", when="20240306110000"))
    update = adt("Z99", "2", movement="M1", action="UPDATE", original="A01", when="20240306093000")
    send(door, update)
    encounter = door.one("Encounter", identifier=VISIT)
    assert encounter["status"] == "in-progress"
    assert encounter["period"] == {"start": "2024-03-06T09:30:00+01:00"}
    assert movements(encounter) == [("M1", "A01", "active")]
