"""Organizations: the hospital (FINESS) an Encounter is provided by and organisations named
in PRT segments, found by their national identifier or created (FR Core Organization)."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2.er7 import Field
from adapters.hl7v2.identifiers import FINESS, IDNST, Authority
from adapters.hl7v2.translation import Translation

_FINESS_TYPES = frozenset({"FINEG", "FINEJ", "FINESS"})


def national_identifier(authority: Authority, value: str = "", kind: str = "") -> dict | None:
    """The FINESS or IDNST an XON names (XON-10 typed FINEG/FINEJ, or assigned by the IDNST
    authority), or the FINESS of a facility's HD."""
    if value:
        if kind.upper() in _FINESS_TYPES:
            return {"system": FINESS, "value": value}
        if authority.oid == IDNST.removeprefix("urn:oid:"):
            return {"system": IDNST, "value": value}
        return None
    finess = authority.finess
    return {"system": FINESS, "value": finess} if finess else None


def reference(t: Translation, identifier: dict[str, Any], name: str) -> dict[str, Any]:
    """A reference to the organisation with this national identifier, created if unknown."""
    token = f"{identifier['system']}|{identifier['value']}"
    resource: dict[str, Any] = {"resourceType": "Organization", "identifier": [identifier]}
    if name:
        resource["name"] = name
    found = t.fhir.create_unless_found("Organization", resource, [("identifier", token)])
    return {"reference": f"Organization/{found}", **({"display": name} if name else {})}


def hospital(t: Translation) -> dict[str, Any] | None:
    """The hospital of the message (its facility, PV1-3.4 or MSH-4), when it has a FINESS."""
    identifier = national_identifier(t.facility)
    return reference(t, identifier, t.facility.namespace) if identifier else None


def of_xon(t: Translation, xon: Field) -> dict[str, Any] | None:
    """The organisation of an XON (PRT-8) with a national identifier in XON-10."""
    identifier = national_identifier(Authority.of(xon, 6), xon(10), xon(7))
    return reference(t, identifier, xon(1)) if identifier else None
