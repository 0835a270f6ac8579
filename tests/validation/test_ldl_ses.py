"""The patient of the ANS LDL-SES discharge letter (../shared/fixtures/cda), built as a FHIR
Patient, conforms to FR Core Patient INS: INS-NIR of test 279035121518989 (OID
1.2.250.1.213.1.4.10), birth and used names, gender, birth date, address, telecom."""

from __future__ import annotations

from typing import Any

from lxml import etree

from fhir_server.model.structure import check_resource
from fhir_server.validation import Validator
from tests.shared import shared_fixture

HL7 = {"hl7": "urn:hl7-org:v3"}
FR = "https://hl7.fr/ig/fhir/core"
INS_TYPES = {
    "1.2.250.1.213.1.4.8": ("INS-NIR", "official"),
    "1.2.250.1.213.1.4.9": ("INS-NIA", "temp"),
    "1.2.250.1.213.1.4.10": ("INS-NIR-TEST", "official"),
    "1.2.250.1.213.1.4.11": ("INS-NIR-DEMO", "official"),
}
GENDERS = {"F": "female", "M": "male"}
TELECOM_USES = {"H": "home", "MC": "mobile", "WP": "work"}


def _text(node: Any, path: str) -> str | None:
    found = node.find(path, HL7)
    return found.text.strip() if found is not None and found.text else None


def _identifier(id_node: Any) -> dict[str, Any]:
    root, value = id_node.get("root"), id_node.get("extension")
    if root in INS_TYPES:
        code, use = INS_TYPES[root]
        coding = {"system": f"{FR}/CodeSystem/fr-core-cs-v2-0203", "code": code}
        return {
            "use": use,
            "type": {"coding": [coding]},
            "system": f"urn:oid:{root}",
            "value": value,
        }
    return {"use": "usual", "system": f"urn:oid:{root}", "value": value}


def _names(name: Any) -> list[dict[str, Any]]:
    """The birth name (qualifier BR, first given name of the birth certificate) as the official
    name, the name in use (CL) as the usual one."""
    official = {
        "use": "official",
        "family": _text(name, "hl7:family[@qualifier='BR']"),
        "given": [_text(name, "hl7:given[@qualifier='BR']")],
    }
    usual = {
        "use": "usual",
        "family": _text(name, "hl7:family[@qualifier='CL']"),
        "given": [_text(name, "hl7:given[@qualifier='CL']")],
    }
    return [official, usual]


def _telecom(node: Any) -> dict[str, Any]:
    scheme, _, value = node.get("value").partition(":")
    telecom = {"system": "email" if scheme == "mailto" else "phone", "value": value}
    if node.get("use") in TELECOM_USES:
        telecom["use"] = TELECOM_USES[node.get("use")]
    return telecom


def patient_from_ldl_ses(document: Any) -> dict[str, Any]:
    role = document.find("hl7:recordTarget/hl7:patientRole", HL7)
    person = role.find("hl7:patient", HL7)
    address = role.find("hl7:addr", HL7)
    street = " ".join(
        filter(None, [_text(address, "hl7:houseNumber"), _text(address, "hl7:streetName")])
    )
    birth = person.find("hl7:birthTime", HL7).get("value")
    identifiers = [_identifier(node) for node in role.findall("hl7:id", HL7)]
    # The letter carries no reliability code of its own: the CI-SIS only lets a document carry
    # an INS for a qualified identity, so an INS in patientRole/id means VALI.
    reliability = "VALI" if any(i.get("type") for i in identifiers) else "PROV"
    return {
        "resourceType": "Patient",
        "meta": {"profile": [f"{FR}/StructureDefinition/fr-core-patient-ins"]},
        "extension": [
            {
                "url": f"{FR}/StructureDefinition/fr-core-identity-reliability",
                "extension": [
                    {
                        "url": "identityReliability",
                        "valueCoding": {
                            "system": f"{FR}/CodeSystem/fr-core-cs-v2-0445",
                            "code": reliability,
                        },
                    }
                ],
            }
        ],
        "identifier": identifiers,
        "name": _names(person.find("hl7:name", HL7)),
        "telecom": [_telecom(node) for node in role.findall("hl7:telecom", HL7)],
        "gender": GENDERS.get(
            person.find("hl7:administrativeGenderCode", HL7).get("code"), "unknown"
        ),
        "birthDate": f"{birth[:4]}-{birth[4:6]}-{birth[6:8]}",
        "address": [
            {
                "line": [line for line in (street, _text(address, "hl7:unitID")) if line],
                "city": _text(address, "hl7:city"),
                "postalCode": _text(address, "hl7:postalCode"),
                "country": _text(address, "hl7:country"),
            }
        ],
    }


def test_ldl_ses_patient_conforms_to_fr_core_patient_ins(validator: Validator) -> None:
    document = etree.parse(str(shared_fixture("cda", "ldl-ses-2022.01.xml")))
    patient = patient_from_ldl_ses(document.getroot())
    assert patient["identifier"][0] == {
        "use": "official",
        "type": {
            "coding": [{"system": f"{FR}/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIR-TEST"}]
        },
        "system": "urn:oid:1.2.250.1.213.1.4.10",
        "value": "279035121518989",
    }
    assert patient["name"][0] == {"use": "official", "family": "PAT-TROIS", "given": ["DOMINIQUE"]}
    assert (patient["gender"], patient["birthDate"]) == ("female", "1979-03-28")
    check_resource(patient, "Patient")
    issues = validator.validate(patient, patient["meta"]["profile"])
    assert issues == []
