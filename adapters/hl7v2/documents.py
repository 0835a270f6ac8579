"""CI-SIS MDM (HL7 v2.6, "transmission de documents CDA") → DocumentReference.

| event | ORC-1 / OBX-11 | what it does |
|---|---|---|
| T02 | NW / F | the document (TXA-12) is current |
| T10 | RO / C | the document (TXA-12) is current and replaces TXA-13, now superseded |
| T04 | CA / D | the document is withdrawn: entered-in-error |

- The document is the base64 CDA of the first OBX of type ED: kept as sent in
  `content.attachment.data` (with its size, SHA-1 and MIME type from OBX-5.2/5.3); base64
  without its final padding (as some engines send it) gets its `=` back.
- masterIdentifier: TXA-12 (an OID, or an extension under an OID root); type: TXA-2 with the
  coding of OBX-3 (or OBR-4) that carries the same code; date: TXA-4.
- A discharge letter (LOINC 11490-0) claims the discharge-documentreference profile: it needs
  its stay (PV1-19), an author, a date, and the content.
- author: the sender (PRT SB: the professional of PRT-5, by IDNPS/RPPS, with the MSSanté
  address of PRT-15; the organisation of PRT-8, by FINESS), else the originators of TXA-9,
  else the hospital; authenticator: TXA-22 when it names a known professional.
- Recipients (PRT RCT): R4 DocumentReference has no recipient. Each is a contained
  Practitioner (PRT-5), Organization (PRT-8) or PractitionerRole (an address alone) with its
  MSSanté address, listed by the IHE MHD extension `ihe-intendedRecipient` (the XDS
  intendedRecipient MSSanté itself carries in its XDM metadata).
- T04 withdraws TXA-12 when known, else its parent TXA-13 (the fixtures of CI-SIS send the
  document withdrawn as parent); a withdrawal or a replacement received before the document
  is kept, so that the document arrives withdrawn or superseded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from adapters.hl7v2 import encounters, organizations, patients, practitioners
from adapters.hl7v2.er7 import Field, Segment
from adapters.hl7v2.errors import ErrorCode, MessageError
from adapters.hl7v2.identifiers import Authority
from adapters.hl7v2.translation import Translation

DISCHARGE_PROFILE = "https://cpts-fhir.org/fhir/StructureDefinition/discharge-documentreference"
DISCHARGE_LETTER = "11490-0"
LOINC = "http://loinc.org"
INTENDED_RECIPIENT = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-intendedRecipient"
_CODING_SYSTEMS = {
    "LN": LOINC,
    "LOINC": LOINC,
    "TRE_A05-TYPEDOCCOMPLEMENTAIRE": "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire",
    "TRE_A05": "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire",
}
_DOC_STATUS = {
    "AU": "final",
    "LA": "final",
    "DO": "final",
    "IP": "preliminary",
    "PA": "preliminary",
}
_WITHDRAWN = {"superseded", "entered-in-error"}


def document_message(t: Translation) -> None:
    """T02, T04, T10."""
    event = t.message.event.upper()
    txa = t.message.require("TXA")
    patient_id = patients.upsert(t, t.message.require("PID"))
    pv1 = t.message.first("PV1")
    encounter_reference = None
    if pv1 is not None and pv1(19):
        encounter = encounters.visit(t, pv1, patient_id)
        t.fhir.write("Encounter", encounter["id"], encounter)
        encounter_reference = {"reference": f"Encounter/{encounter['id']}"}
    number = _number(txa.field(12))
    if number is None:
        raise MessageError(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "TXA-12 (unique document number) is required",
            txa.at(12),
        )
    parent = _number(txa.field(13))
    if event == "T10" and parent is None:
        raise MessageError(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "TXA-13 (the document replaced) is required in a replacement (T10)",
            txa.at(13),
        )
    resource = _document(t, txa, number, patient_id, encounter_reference)
    if event == "T04":
        _withdraw(t, resource, number, parent)
        return
    existing_id = _find(t, number)
    existing = t.fhir.read("DocumentReference", existing_id) if existing_id else None
    replaced_later = t.fhir.find("DocumentReference", [("relatesto:identifier", _token(number))])
    if existing is not None and existing.get("status") in _WITHDRAWN:
        resource["status"] = existing["status"]
    elif replaced_later:
        resource["status"] = "superseded"
    if event == "T10" and parent is not None:
        parent_id = _find(t, parent)
        target = (
            {"reference": f"DocumentReference/{parent_id}"} if parent_id else {"identifier": parent}
        )
        resource["relatesTo"] = [{"code": "replaces", "target": target}]
        if parent_id:
            _set_status(t, parent_id, "superseded")
    _store(t, existing_id, resource)


def _withdraw(t: Translation, resource: dict[str, Any], number: dict, parent: dict | None) -> None:
    for candidate in (number, parent):
        found = _find(t, candidate) if candidate else None
        if found:
            _set_status(t, found, "entered-in-error")
            return
    resource["masterIdentifier"] = parent or number
    resource["status"] = "entered-in-error"
    _store(t, None, resource)


def _set_status(t: Translation, document_id: str, status: str) -> None:
    document = t.fhir.read("DocumentReference", document_id)
    if document is not None and document.get("status") != "entered-in-error":
        document["status"] = status
        t.fhir.write("DocumentReference", document_id, document)


def _store(t: Translation, existing_id: str | None, resource: dict[str, Any]) -> None:
    if existing_id:
        t.fhir.write("DocumentReference", existing_id, resource)
    else:
        t.fhir.create("DocumentReference", resource)


def _find(t: Translation, number: dict[str, Any]) -> str | None:
    return t.fhir.find("DocumentReference", [("identifier", _token(number))])


def _token(identifier: dict[str, Any]) -> str:
    return f"{identifier.get('system', '')}|{identifier['value']}"


def _number(ei: Field) -> dict[str, Any] | None:
    """A document number (EI): an extension under an OID root (EI-3), or a whole OID."""
    value, root = ei(1), Authority.from_components(ei, 2)
    if not value:
        return None
    if root.oid:
        return {"system": f"urn:oid:{root.oid}", "value": value}
    if Authority(universal_id=value).oid:
        return {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{value}"}
    return {"system": "urn:ietf:rfc:3986", "value": value} if ":" in value else {"value": value}


def _document(
    t: Translation,
    txa: Segment,
    number: dict[str, Any],
    patient_id: str,
    encounter: dict[str, Any] | None,
) -> dict[str, Any]:
    obx = _content_obx(t)
    type_coding = _type(t, txa)
    resource: dict[str, Any] = {"resourceType": "DocumentReference"}
    if type_coding.get("system") == LOINC and type_coding.get("code") == DISCHARGE_LETTER:
        resource["meta"] = {"profile": [DISCHARGE_PROFILE]}
    contained, recipients = _recipients(t)
    if contained:
        resource["contained"] = contained
        resource["extension"] = recipients
    resource["masterIdentifier"] = number
    resource["status"] = "current"
    doc_status = _DOC_STATUS.get(txa(17).upper())
    if doc_status:
        resource["docStatus"] = doc_status
    resource["type"] = {"coding": [type_coding]}
    resource["subject"] = {"reference": f"Patient/{patient_id}"}
    when = t.moment(txa, 4) or t.moment(txa, 6) or t.moment(txa, 7) or t.occurred
    if when:
        resource["date"] = when.instant
    authors, people = _authors(t, txa)
    if authors:
        resource["author"] = authors
    authenticator = people.get(txa(22, 1)) if txa(22, 1) else None
    if authenticator:
        resource["authenticator"] = authenticator
    resource["content"] = [{"attachment": _attachment(obx, when.fhir if when else None)}]
    if encounter:
        resource["context"] = {"encounter": [encounter]}
    return resource


def _content_obx(t: Translation) -> Segment:
    for obx in t.message.all("OBX"):
        if obx(2).upper() == "ED" and obx(5, 5):
            return obx
    raise MessageError(
        ErrorCode.REQUIRED_FIELD_MISSING,
        "No OBX of type ED carries the document (OBX-5.5, base64)",
        t.message.require("OBX").at(5, 5),
    )


def _attachment(obx: Segment, created: str | None) -> dict[str, Any]:
    ed = obx.field(5)
    data = "".join(ed(5).split())
    data += "=" * (-len(data) % 4)  # engines that drop the padding: the same bytes
    try:
        content = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise MessageError(
            ErrorCode.DATA_TYPE, "OBX-5.5 is not base64 data", obx.at(5, 5)
        ) from None
    kind, subtype = ed(2).lower(), ed(3).lower()
    attachment: dict[str, Any] = {
        "contentType": f"{kind}/{subtype}" if kind and subtype else "text/xml",
        "data": data,
        "size": len(content),
        "hash": base64.b64encode(hashlib.sha1(content).digest()).decode("ascii"),
    }
    if obx(3, 2):
        attachment["title"] = obx(3, 2)
    if created:
        attachment["creation"] = created
    return attachment


def _type(t: Translation, txa: Segment) -> dict[str, Any]:
    """TXA-2, with the coding system and label of OBX-3 or OBR-4 when they carry its code."""
    code = txa(2)
    for segment, position in ((t.message.first("OBX"), 3), (t.message.first("OBR"), 4)):
        if segment is None or not segment(position, 1):
            continue
        if code and segment(position, 1) != code:
            continue
        coding: dict[str, Any] = {}
        system = _CODING_SYSTEMS.get(segment(position, 3).upper())
        if system:
            coding["system"] = system
        coding["code"] = segment(position, 1)
        if segment(position, 2):
            coding["display"] = segment(position, 2)
        return coding
    if not code:
        raise MessageError(
            ErrorCode.REQUIRED_FIELD_MISSING, "TXA-2 (document type) is required", txa.at(2)
        )
    return {"code": code}


def _participations(t: Translation, role: str) -> list[Segment]:
    return [prt for prt in t.message.all("PRT") if prt(4, 1).upper() == role]


def _telecom(prt: Segment) -> list[dict[str, Any]]:
    return [c for xtn in prt.repetitions(15) if (c := patients.contact_point(xtn))]


def _authors(
    t: Translation, txa: Segment
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The authors, and the professionals among them by the id the message gave them."""
    authors: list[dict[str, Any]] = []
    people: dict[str, dict[str, Any]] = {}

    def add(reference: dict[str, Any] | None, person_id: str = "") -> None:
        if reference is None:
            return
        if person_id:
            people[person_id] = reference
        if all(a.get("reference") != reference.get("reference") for a in authors):
            authors.append(reference)

    for prt in _participations(t, "SB"):
        person = prt.field(5)
        add(practitioners.reference(t, person, _telecom(prt)), person(1))
        if prt(8):
            add(organizations.of_xon(t, prt.field(8)))
    for xcn in txa.repetitions(9):
        add(practitioners.reference(t, xcn), xcn(1))
    if not authors:
        add(organizations.hospital(t))
    return authors, people


def _recipients(t: Translation) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    contained: list[dict[str, Any]] = []
    extensions: list[dict[str, Any]] = []
    for index, prt in enumerate(_participations(t, "RCT"), 1):
        id_ = f"recipient-{index}"
        telecom = _telecom(prt)
        person, organization = prt.field(5), prt.field(8)
        recipient: dict[str, Any]
        if person:
            recipient = {"resourceType": "Practitioner", "id": id_}
            identifiers = practitioners.identifiers(t, person)
            if identifiers:
                recipient["identifier"] = identifiers
            if practitioners.name(person):
                recipient["name"] = [practitioners.name(person)]
        elif organization:
            recipient = {"resourceType": "Organization", "id": id_}
            if organization(10):
                authority = Authority.of(organization, 6)
                recipient["identifier"] = [
                    t.authorities.identifier(organization(10), authority, t.facility)
                ]
            if organization(1):
                recipient["name"] = organization(1)
        else:
            recipient = {"resourceType": "PractitionerRole", "id": id_}
        if telecom:
            recipient["telecom"] = telecom
        if len(recipient) == 2:  # nothing but its type and id
            continue
        contained.append(recipient)
        extensions.append({"url": INTENDED_RECIPIENT, "valueReference": {"reference": f"#{id_}"}})
    return contained, extensions
