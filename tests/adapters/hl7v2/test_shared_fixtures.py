"""The published messages of ../shared/fixtures/hl7v2 (IHE PAM France ADT, CI-SIS MDM) sent
over a real MLLP socket, and what the server made of them, field by field."""

from __future__ import annotations

from tests.adapters.hl7v2.conftest import Door
from tests.adapters.hl7v2.messages import fixture

LOCAL = "https://cpts-fhir.org/fhir/sid/hl7v2-authority/000897406"
RELIABILITY = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
MOVEMENT = "https://cpts-fhir.org/fhir/StructureDefinition/encounter-movement"


def _movement(extension: dict) -> dict:
    return {
        part["url"]: next(v for k, v in part.items() if k.startswith("value"))
        for part in extension["extension"]
    }


def test_admission_a01(door: Door) -> None:
    ack = door.send(fixture("pamfr-adt-a01-admission"))
    assert ack.code == "AA" and ack.control_id == "3975"
    assert ack.msh(3) == "DPI" and ack.msh(4) == "CHU-X"  # the receiver answers...
    assert ack.msh(5) == "GAM" and ack.msh(6) == "CHU-X"  # ...the sender
    assert ack.msh(9) == "ACK^A01^ACK" and ack.msh(12) == "2.5^FRA^2.11"
    assert ack.msh(18) == "UNICODE UTF-8"

    patient = door.one("Patient", identifier=f"{LOCAL}|000003")
    assert patient["meta"]["profile"] == [
        "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins"
    ]
    assert patient["identifier"] == [
        {
            "use": "usual",
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PI"}
                ]
            },
            "system": LOCAL,
            "value": "000003",
        },
        {
            "use": "official",
            "type": {
                "coding": [
                    {
                        "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203",
                        "code": "INS-NIR-TEST",
                    }
                ]
            },
            "system": "urn:oid:1.2.250.1.213.1.4.10",
            "value": "279035121518989",
        },
    ]
    assert patient["extension"] == [
        {
            "url": RELIABILITY,
            "extension": [
                {
                    "url": "identityReliability",
                    "valueCoding": {
                        "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445",
                        "code": "VALI",
                    },
                }
            ],
        }
    ]
    assert patient["name"] == [{"use": "official", "family": "PAT-TROIS", "given": ["DOMINIQUE"]}]
    assert patient["gender"] == "female"
    assert patient["birthDate"] == "1979-03-28"
    assert patient["address"] == [
        {
            "use": "home",
            "line": ["28 Av de Breteuil"],
            "city": "PARIS",
            "postalCode": "75007",
            "country": "FRA",
        }
    ]
    assert patient["maritalStatus"]["coding"][0]["code"] == "S"
    assert patient["deceasedBoolean"] is False
    assert patient["active"] is True
    # Found by its INS too (validated identity)
    assert door.one("Patient", identifier="urn:oid:1.2.250.1.213.1.4.10|279035121518989")

    encounter = door.one("Encounter", identifier=f"{LOCAL}|000897406")
    assert encounter["status"] == "in-progress"
    assert encounter["class"]["code"] == "IMP"
    assert encounter["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert encounter["identifier"][0]["type"]["coding"][0]["code"] == "VN"
    assert encounter["period"] == {"start": "2024-03-06T11:00:00+01:00"}
    assert encounter["location"] == [
        {
            "location": {"identifier": {"system": LOCAL, "value": "6268"}, "display": "Chir V"},
            "status": "active",
            "period": {"start": "2024-03-06T11:00:00+01:00"},
        }
    ]
    movement = _movement(next(e for e in encounter["extension"] if e["url"] == MOVEMENT))
    assert movement["identifier"] == {"system": LOCAL, "value": "001"}
    assert movement["event"]["code"] == "A01"
    assert movement["status"] == "active"
    assert movement["nature"] == "HMS"

    hospital = door.read(encounter["serviceProvider"]["reference"])
    assert hospital["identifier"] == [
        {"system": "https://finess.esante.gouv.fr", "value": "000897406"}
    ]
    assert hospital["name"] == "CHU-X"


def test_admission_then_discharge_a03(door: Door) -> None:
    assert door.send(fixture("pamfr-adt-a01-admission")).code == "AA"
    ack = door.send(fixture("pamfr-adt-a03-discharge"))
    assert ack.code == "AA" and ack.control_id == "3995" and ack.msh(9) == "ACK^A03^ACK"

    encounters = door.search("Encounter")
    assert len(encounters) == 1  # one stay, the same Encounter
    encounter = encounters[0]
    assert encounter["status"] == "finished"
    assert encounter["period"] == {
        "start": "2024-03-06T11:00:00+01:00",
        "end": "2024-03-06T11:00:00+01:00",
    }
    assert [loc["status"] for loc in encounter["location"]] == ["completed"]
    # This engine puts one empty field too many before ZBE-4: the action and the unit are
    # still found (ZBE-5 INSERT, ZBE-8 "Urgences")
    movements = [_movement(e) for e in encounter["extension"] if e["url"] == MOVEMENT]
    assert [(m["identifier"]["value"], m["event"]["code"], m["status"]) for m in movements] == [
        ("001", "A01", "active"),
        ("002", "A03", "active"),
    ]
    assert movements[1]["ward"] == {
        "identifier": {"system": LOCAL, "value": "8782"},
        "display": "Urgences",
    }
    assert len(door.search("Patient")) == 1


def test_discharge_before_admission_is_not_lost(door: Door) -> None:
    assert door.send(fixture("pamfr-adt-a03-discharge")).code == "AA"
    encounter = door.one("Encounter")
    assert encounter["status"] == "finished"
    assert encounter["period"] == {"end": "2024-03-06T11:00:00+01:00"}
    assert door.send(fixture("pamfr-adt-a01-admission")).code == "AA"
    encounter = door.one("Encounter")
    assert encounter["status"] == "finished"  # the late admission does not reopen the stay
    assert encounter["period"]["start"] == "2024-03-06T11:00:00+01:00"


def test_document_t02_sent_by_mssante(door: Door) -> None:
    ack = door.send(fixture("mdm-t02-mssante-initial"))
    expected = fixture("mdm-t02-mssante-initial.ack").decode().strip().split("\n")
    assert ack.code == "AA" == expected[1].split("|")[1]
    assert ack.control_id == "015" == expected[1].split("|")[2]
    for position in (3, 4, 5, 6, 9, 11, 12, 17, 18):  # as the published ACK
        assert ack.msh(position) == expected[0].split("|")[position - 1], position

    patient = door.one("Patient", identifier="urn:oid:1.2.250.1.213.1.4.10|279035121518989")
    document = door.one("DocumentReference")
    assert document["masterIdentifier"] == {
        "system": "urn:ietf:rfc:3986",
        "value": "urn:oid:1.2.250.1.71.4.2.2.120456789.71024000081",
    }
    assert document["status"] == "current"
    assert document["docStatus"] == "final"
    assert document["type"] == {
        "coding": [
            {"system": "http://loinc.org", "code": "18748-4", "display": "CR d'imagerie médicale"}
        ]
    }
    assert "meta" not in document or "profile" not in document["meta"]  # not a discharge letter
    assert document["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert document["date"] == "2022-12-16T09:32:00+01:00"
    attachment = document["content"][0]["attachment"]
    assert attachment["contentType"] == "text/xml"
    assert attachment["data"] == "RG9jdW1lbnQgbWVkY2lhbCBhdSBmb3JtYXQgQ0RBIG5pdmVhdSAx"
    assert attachment["size"] == len(b"Document medcial au format CDA niveau 1")
    assert attachment["title"] == "CR d'imagerie médicale"
    # The sender (PRT SB) is the author, with the MSSanté address it wrote from
    author = door.read(document["author"][0]["reference"])
    assert {(i["system"], i["value"]) for i in author["identifier"]} == {
        ("urn:oid:1.2.250.1.71.4.2.1", "801234564895"),
        ("https://rpps.esante.gouv.fr", "01234564895"),
    }
    assert author["name"] == [{"family": "Eric", "given": ["Thomas"]}]
    assert author["telecom"] == [{"system": "email", "value": "thomas.eric@medecin.mssante.fr"}]
    assert document["authenticator"]["reference"] == document["author"][0]["reference"]
    # The recipient (PRT RCT): an organisation's MSSanté mailbox
    assert document["extension"] == [
        {
            "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-intendedRecipient",
            "valueReference": {"reference": "#recipient-1"},
        }
    ]
    assert document["contained"] == [
        {
            "resourceType": "Organization",
            "id": "recipient-1",
            "identifier": [
                {
                    "system": "https://cpts-fhir.org/fhir/sid/hl7v2-authority/120456789",
                    "value": "3435",
                }
            ],
            "name": "Service d'urologie",
            "telecom": [{"system": "email", "value": "dpi@hopitalA.mssante.fr"}],
        }
    ]
    assert "context" not in document  # PV1 names no stay


def test_document_t02_with_a_whole_cda(door: Door) -> None:
    raw = fixture("mdm-t02-cda-base64")
    assert door.send(raw).code == "AA"
    document = door.one("DocumentReference")
    data = raw.split(b"^text^XML^Base64^")[1].split(b"|")[0].decode()
    attachment = document["content"][0]["attachment"]
    assert attachment["data"] == data  # the original CDA, as sent
    assert attachment["size"] > 200_000
    encounter = door.read(document["context"]["encounter"][0]["reference"])
    assert encounter["identifier"][0]["value"] == "000897406"
    assert encounter["class"]["code"] == "IMP"
    authors = [door.read(a["reference"]) for a in document["author"]]
    assert [a["resourceType"] for a in authors] == ["Practitioner", "Organization"]
    assert authors[1]["identifier"] == [
        {"system": "https://finess.esante.gouv.fr", "value": "300017985"}
    ]
    recipient = document["contained"][0]
    assert recipient["resourceType"] == "Practitioner"
    assert recipient["name"] == [{"family": "Hoda", "given": ["Adam"]}]
    assert recipient["telecom"] == [
        {"system": "email", "value": "adam.hoda@test-ci-sis.mssante.fr"}
    ]


def test_document_replaced_t10_then_withdrawn_t04(door: Door) -> None:
    assert door.send(fixture("mdm-t02-mssante-initial")).code == "AA"
    first = door.one("DocumentReference")
    ack = door.send(fixture("mdm-t10-mssante-replace", control="016"))
    assert ack.code == "AA" and ack.control_id == "016"
    old = door.read(f"DocumentReference/{first['id']}")
    assert old["status"] == "superseded"
    new = door.one(
        "DocumentReference",
        identifier="urn:ietf:rfc:3986|urn:oid:1.2.250.1.71.4.2.2.120456789.71024000082",
    )
    assert new["status"] == "current"
    assert new["relatesTo"] == [
        {"code": "replaces", "target": {"reference": f"DocumentReference/{first['id']}"}}
    ]
    assert door.send(fixture("mdm-t04-mssante-delete", control="017")).code == "AA"
    assert door.read(f"DocumentReference/{new['id']}")["status"] == "entered-in-error"
    assert door.read(f"DocumentReference/{first['id']}")["status"] == "superseded"


def test_document_withdrawn_t04(door: Door) -> None:
    assert door.send(fixture("mdm-t02-mssante-initial")).code == "AA"
    assert door.send(fixture("mdm-t04-mssante-delete", control="016")).code == "AA"
    document = door.one("DocumentReference")  # the T04 names the document as its parent
    assert document["status"] == "entered-in-error"


def test_replacement_received_before_the_document_it_replaces(door: Door) -> None:
    assert door.send(fixture("mdm-t10-mssante-replace", control="016")).code == "AA"
    new = door.one("DocumentReference")
    assert new["status"] == "current"
    assert new["relatesTo"] == [
        {
            "code": "replaces",
            "target": {
                "identifier": {
                    "system": "urn:ietf:rfc:3986",
                    "value": "urn:oid:1.2.250.1.71.4.2.2.120456789.71024000081",
                }
            },
        }
    ]
    assert door.send(fixture("mdm-t02-mssante-initial")).code == "AA"
    old = door.one(
        "DocumentReference",
        identifier="urn:ietf:rfc:3986|urn:oid:1.2.250.1.71.4.2.2.120456789.71024000081",
    )
    assert old["status"] == "superseded"  # the late original arrives replaced
