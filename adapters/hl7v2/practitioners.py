"""Health professionals named in XCN fields (PRT-5, TXA-9, TXA-22): the national identifier
IDNPS (`urn:oid:1.2.250.1.71.4.2.1`), with the RPPS it contains when it is 8 + RPPS."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2.er7 import Field
from adapters.hl7v2.identifiers import FR_V2_0203, IDNPS, RPPS, Authority
from adapters.hl7v2.translation import Translation


def identifiers(t: Translation, xcn: Field) -> list[dict[str, Any]]:
    """The identifiers of the person of an XCN (none without an id)."""
    value = xcn(1)
    if not value:
        return []
    authority = Authority.of(xcn, 9)
    if authority.oid == IDNPS.removeprefix("urn:oid:") or xcn(13).upper() == "IDNPS":
        found = [_typed(IDNPS, "IDNPS", value)]
        if len(value) == 12 and value.startswith("8") and value.isdigit():
            found.append(_typed(RPPS, "RPPS", value[1:]))
        return found
    if xcn(13).upper() == "RPPS":
        return [_typed(RPPS, "RPPS", value)]
    return [t.identifier(xcn, authority)]


def _typed(system: str, code: str, value: str) -> dict[str, Any]:
    return {
        "type": {"coding": [{"system": FR_V2_0203, "code": code}]},
        "system": system,
        "value": value,
    }


def name(xcn: Field) -> dict[str, Any] | None:
    family, given = xcn(2), xcn(3)
    if not family and not given:
        return None
    found: dict[str, Any] = {}
    if family:
        found["family"] = family
    if given:
        found["given"] = [given]
    return found


def display(xcn: Field) -> str:
    return " ".join(part for part in (xcn(3), xcn(2)) if part)


def reference(
    t: Translation, xcn: Field, telecom: list[dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    """A reference to the Practitioner of an XCN with a national identifier, created (with
    its name and telecom) if unknown; None when the XCN has no national identifier."""
    found = identifiers(t, xcn)
    national = [i for i in found if i["system"] in (IDNPS, RPPS)]
    if not national:
        return None
    resource: dict[str, Any] = {"resourceType": "Practitioner", "identifier": found}
    if name(xcn):
        resource["name"] = [name(xcn)]
    if telecom:
        resource["telecom"] = telecom
    token = f"{national[0]['system']}|{national[0]['value']}"
    id_ = t.fhir.create_unless_found("Practitioner", resource, [("identifier", token)])
    label = display(xcn)
    return {"reference": f"Practitioner/{id_}", **({"display": label} if label else {})}
