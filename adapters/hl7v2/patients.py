"""PID → Patient (FR Core), matching and merging.

Matching: by INS (PID-3 repetitions assigned by an INS OID) only when the identity is
validated (PID-32 = VALI), else by the local identifier (type PI, or untyped, with its
assigning authority). A patient merged into another (Patient.link replaced-by) stands for the
surviving one, whose identity a message about the merged one does not change. The first
message about an unknown patient creates it.

Update: the message's identity replaces the patient's name, gender, birth date, addresses,
telephones, marital status, death and identity reliability when it gives them; identifiers
of other authorities and every other element are kept. An INS is carried only with a
validated identity (FR Core): a message that lowers the reliability removes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapters.hl7v2.er7 import Field, Segment
from adapters.hl7v2.errors import ErrorCode, MessageError
from adapters.hl7v2.identifiers import FR_V2_0203, INS_OIDS, Authority
from adapters.hl7v2.translation import Translation

RELIABILITY = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
RELIABILITY_SYSTEM = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445"
RELIABILITY_CODES = frozenset({"VIDE", "PROV", "VALI", "DOUTE", "FICTI", "DOUT", "FICT"})
PATIENT_INS_PROFILE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins"
INS_SYSTEMS = frozenset(f"urn:oid:{oid}" for oid in INS_OIDS)
_NAME_USES = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "S": "anonymous"}
_GENDERS = {"M": "male", "F": "female", "U": "unknown", "O": "other", "A": "other", "N": "unknown"}
_ADDRESS_USES = {"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "old"}
_MARITAL = {
    "A": "L",
    "B": "U",
    "C": "C",
    "D": "D",
    "E": "L",
    "G": "T",
    "I": "I",
    "M": "M",
    "N": "A",
    "P": "T",
    "R": "T",
    "S": "S",
    "W": "W",
}
_MARITAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"


@dataclass
class Identity:
    """What a PID says of the patient."""

    local: list[dict[str, Any]] = field(default_factory=list)
    ins: list[dict[str, Any]] = field(default_factory=list)  # only with a validated identity
    reliability: str | None = None
    demographics: dict[str, Any] = field(default_factory=dict)

    @property
    def validated(self) -> bool:
        return self.reliability == "VALI"


def identity(t: Translation, pid: Segment) -> Identity:
    found = Identity()
    reliability = next(
        (r().upper() for r in pid.repetitions(32) if r().upper() in RELIABILITY_CODES), None
    )
    found.reliability = reliability
    for cx in pid.repetitions(3):
        value, authority, kind = cx(1), Authority.of(cx, 4), cx(5).upper()
        if not value:
            continue
        if authority.oid in INS_OIDS:
            if reliability == "VALI":
                found.ins.append(_ins(value, authority.oid))
        elif kind in ("PI", ""):
            local = t.identifier(cx, authority, "PI")
            found.local.append({"use": "usual", **local})
    if not found.local and not found.ins:
        raise MessageError(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "PID-3 holds no patient identifier this server can match on: a local identifier "
            "(PI) with its assigning authority, or an INS with a validated identity (PID-32)",
            pid.at(3),
        )
    found.demographics = _demographics(t, pid)
    return found


def _ins(value: str, oid: str) -> dict[str, Any]:
    kind = INS_OIDS[oid]
    return {
        "use": "temp" if kind == "INS-NIA" else "official",
        "type": {"coding": [{"system": FR_V2_0203, "code": kind}]},
        "system": f"urn:oid:{oid}",
        "value": value,
    }


def _demographics(t: Translation, pid: Segment) -> dict[str, Any]:
    found: dict[str, Any] = {}
    names = [name for xpn in pid.repetitions(5) if (name := _name(xpn))]
    if names:
        found["name"] = names
    gender = _GENDERS.get(pid(8).upper())
    if gender:
        found["gender"] = gender
    born = t.moment(pid, 7)
    if born:
        found["birthDate"] = born.date
    addresses = [a for xad in pid.repetitions(11) if (a := _address(xad))]
    if addresses:
        found["address"] = addresses
    telecom = [c for xtn in pid.repetitions(13) if (c := contact_point(xtn, "home"))]
    telecom += [c for xtn in pid.repetitions(14) if (c := contact_point(xtn, "work"))]
    if telecom:
        found["telecom"] = telecom
    marital = _MARITAL.get(pid(16).upper())
    if marital:
        found["maritalStatus"] = {"coding": [{"system": _MARITAL_SYSTEM, "code": marital}]}
    died = t.moment(pid, 29)
    if died:
        found["deceasedDateTime"] = died.fhir
    elif pid(30).upper() in ("Y", "N"):
        found["deceasedBoolean"] = pid(30).upper() == "Y"
    return found


def _name(xpn: Field) -> dict[str, Any] | None:
    family = xpn(1)
    given: list[str] = []
    for candidate in [xpn(2), *xpn(3).split()]:
        if candidate and candidate not in given:
            given.append(candidate)
    if not family and not given:
        return None
    name: dict[str, Any] = {}
    use = _NAME_USES.get(xpn(7).upper())
    if use:
        name["use"] = use
    if family:
        name["family"] = family
    if given:
        name["given"] = given
    if xpn(5):
        name["prefix"] = [xpn(5)]
    return name


def _address(xad: Field) -> dict[str, Any] | None:
    kind = xad(7).upper()
    if kind == "BDL":  # IHE PAM France: the place of birth, not an address
        return None
    address: dict[str, Any] = {}
    if kind in _ADDRESS_USES:
        address["use"] = _ADDRESS_USES[kind]
    lines = [line for line in (xad(1), xad(2)) if line]
    if lines:
        address["line"] = lines
    for key, position in (("city", 3), ("state", 4), ("postalCode", 5), ("country", 6)):
        if xad(position):
            address[key] = xad(position)
    return address if set(address) - {"use"} else None


def contact_point(xtn: Field, default_use: str | None = None) -> dict[str, Any] | None:
    """An XTN as a ContactPoint: e-mail addresses (Internet, X.400, NET), telephones, faxes."""
    use_code, equipment = xtn(2).upper(), xtn(3).upper()
    if equipment in ("INTERNET", "X.400") or use_code == "NET":
        return {"system": "email", "value": xtn(4)} if xtn(4) else None
    number = xtn(12) or xtn(1) or (xtn(6) + xtn(7))
    if not number:
        return None
    point: dict[str, Any] = {
        "system": {"FX": "fax", "BP": "pager"}.get(equipment, "phone"),
        "value": number,
    }
    use = "mobile" if equipment == "CP" else {"WPN": "work", "PRN": "home"}.get(use_code)
    if use or default_use:
        point["use"] = use or default_use
    return point


def find(t: Translation, found: Identity) -> tuple[str | None, bool]:
    """The patient the identity designates: by INS when validated, else by local identifier.
    One merged into another stands for the surviving one: the second value is then True."""
    candidates = [*found.ins, *found.local] if found.validated else found.local
    for identifier in candidates:
        patient_id = t.fhir.find("Patient", [("identifier", _token(identifier))])
        if patient_id:
            survivor = surviving(t, patient_id)
            return survivor, survivor != patient_id
    return None, False


def surviving(t: Translation, patient_id: str) -> str:
    """Follow Patient.link replaced-by to the patient that survived a merge."""
    seen = {patient_id}
    current = t.fhir.read("Patient", patient_id)
    while current is not None:
        target = next(
            (
                link["other"].get("reference", "").removeprefix("Patient/")
                for link in current.get("link", [])
                if link.get("type") == "replaced-by"
            ),
            None,
        )
        if not target or target in seen:
            break
        seen.add(target)
        patient_id, current = target, t.fhir.read("Patient", target)
    return patient_id


def _token(identifier: dict[str, Any]) -> str:
    return f"{identifier.get('system', '')}|{identifier['value']}"


def upsert(t: Translation, pid: Segment) -> str:
    """The id of the patient of a PID, created or updated from it. A message still naming a
    merged patient is about the surviving one, whose identity it does not change."""
    found = identity(t, pid)
    patient_id, merged = find(t, found)
    if merged:
        return patient_id
    existing = t.fhir.read("Patient", patient_id) if patient_id else None
    resource = _merged(existing or {"resourceType": "Patient"}, found)
    if patient_id is None:
        return t.fhir.create("Patient", resource)
    t.fhir.write("Patient", patient_id, resource)
    return patient_id


def _merged(patient: dict[str, Any], found: Identity) -> dict[str, Any]:
    governed = INS_SYSTEMS | {i.get("system") for i in found.local}
    existing = patient.get("identifier", [])
    wanted = [*found.local, *found.ins]
    wanted += [i for i in existing if i.get("system") not in governed]
    # Known identifiers keep their place: a message repeating them makes no new version.
    patient["identifier"] = [i for i in existing if i in wanted]
    patient["identifier"] += [i for i in wanted if i not in patient["identifier"]]
    if found.reliability:
        extensions = [e for e in patient.get("extension", []) if e.get("url") != RELIABILITY]
        patient["extension"] = [_reliability(found.reliability), *extensions]
    profiles = [p for p in patient.get("meta", {}).get("profile", []) if p != PATIENT_INS_PROFILE]
    if found.validated and found.ins:
        profiles.insert(0, PATIENT_INS_PROFILE)
    meta = {k: v for k, v in patient.get("meta", {}).items() if k != "profile"}
    if profiles:
        meta["profile"] = profiles
    if meta:
        patient["meta"] = meta
    else:
        patient.pop("meta", None)
    if "deceasedDateTime" in found.demographics or "deceasedBoolean" in found.demographics:
        patient.pop("deceasedDateTime", None)
        patient.pop("deceasedBoolean", None)
    patient.update(found.demographics)
    patient.setdefault("active", True)
    return patient


def _reliability(code: str) -> dict[str, Any]:
    return {
        "url": RELIABILITY,
        "extension": [
            {
                "url": "identityReliability",
                "valueCoding": {"system": RELIABILITY_SYSTEM, "code": code},
            }
        ],
    }


def merge(t: Translation, surviving_id: str, mrg: Segment) -> None:
    """A40: the patient of MRG-1 is merged into `surviving_id`: Patient.link replaced-by and
    replaces, the merged patient inactive, and every resource that referenced it now
    references the surviving patient (each through an engine update). Unknown: nothing to do."""
    merged_id = None
    for cx in mrg.repetitions(1):
        if cx(1) and Authority.of(cx, 4).oid not in INS_OIDS and cx(5).upper() in ("PI", ""):
            local = t.identifier(cx, Authority.of(cx, 4), "PI")
            merged_id = t.fhir.find("Patient", [("identifier", _token(local))])
            if merged_id:
                break
    if merged_id is None or merged_id == surviving_id:
        return
    merged = t.fhir.read("Patient", merged_id)
    if merged is None:
        return
    merged["active"] = False
    merged["link"] = _linked(merged.get("link", []), surviving_id, "replaced-by")
    t.fhir.write("Patient", merged_id, merged)
    survivor = t.fhir.read("Patient", surviving_id) or {"resourceType": "Patient"}
    survivor["link"] = _linked(survivor.get("link", []), merged_id, "replaces")
    t.fhir.write("Patient", surviving_id, survivor)
    referring = t.fhir.search("Patient", [("_id", merged_id), ("_revinclude", "*")])
    for resource in referring:
        if resource["resourceType"] == "Patient":
            continue
        moved = _retarget(resource, f"Patient/{merged_id}", f"Patient/{surviving_id}")
        version = resource.get("meta", {}).get("versionId")  # read unlocked: no lost update
        t.fhir.write(resource["resourceType"], resource["id"], moved, if_match=version)


def _linked(links: list[dict[str, Any]], other_id: str, kind: str) -> list[dict[str, Any]]:
    reference = f"Patient/{other_id}"
    kept = [link for link in links if link.get("other", {}).get("reference") != reference]
    return [*kept, {"other": {"reference": reference}, "type": kind}]


def _retarget(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        moved = {k: _retarget(v, old, new) for k, v in value.items()}
        reference = moved.get("reference")
        if isinstance(reference, str) and (
            reference == old or reference.endswith("/" + old) or reference.startswith(old + "/")
        ):
            moved["reference"] = new
        return moved
    if isinstance(value, list):
        return [_retarget(v, old, new) for v in value]
    return value
