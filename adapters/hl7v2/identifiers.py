"""Identifiers: from an HL7 assigning authority (HD: namespace & universal id & its type) to
a FHIR `Identifier.system`, and the French national identifiers (FR Core).

The system of an assigning authority is, in this order:
1. the one configured for its universal id or namespace (FHIR_HL7V2_AUTHORITIES);
2. `urn:oid:<universal id>` when it is an OID (type ISO, or none and an OID's shape);
3. `urn:uuid:` for a UUID, the URI itself for a URI;
4. otherwise `https://cpts-fhir.org/fhir/sid/hl7v2-authority/<universal id or namespace>`,
   whatever its type: French engines send a FINESS typed M, N or L for the same domain.
An identifier without an authority belongs to the facility that sent it (PV1-3.4, MSH-4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from adapters.hl7v2.er7 import Field

LOCAL_AUTHORITY_BASE = "https://cpts-fhir.org/fhir/sid/hl7v2-authority/"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
FR_V2_0203 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
FINESS = "https://finess.esante.gouv.fr"
IDNST = "urn:oid:1.2.250.1.71.4.2.2"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
RPPS = "https://rpps.esante.gouv.fr"
INS_OIDS = {
    "1.2.250.1.213.1.4.8": "INS-NIR",
    "1.2.250.1.213.1.4.9": "INS-NIA",
    "1.2.250.1.213.1.4.10": "INS-NIR-TEST",
    "1.2.250.1.213.1.4.11": "INS-NIR-DEMO",
}
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
_FINESS = re.compile(r"([0-9]{2}|2A|2B)[0-9]{7}")


@dataclass(frozen=True)
class Authority:
    """An HL7 HD: namespace id, universal id, universal id type."""

    namespace: str = ""
    universal_id: str = ""
    type: str = ""

    @classmethod
    def of(cls, field: Field, component: int) -> Authority:
        """The HD held by a component of a field (CX-4, XON-6, XCN-9, EI-2..4 ...)."""
        return cls(field(component, 1), field(component, 2), field(component, 3))

    @classmethod
    def from_components(cls, field: Field, first: int) -> Authority:
        """An HD spread over components `first`, `first`+1, `first`+2 (as in an EI)."""
        return cls(field(first), field(first + 1), field(first + 2))

    def __bool__(self) -> bool:
        return bool(self.namespace or self.universal_id)

    @property
    def oid(self) -> str | None:
        if _OID.fullmatch(self.universal_id) and self.type.upper() in ("ISO", ""):
            return self.universal_id
        return None

    @property
    def finess(self) -> str | None:
        """The FINESS the authority names, if it names one (not an OID)."""
        for candidate in (self.universal_id, self.namespace):
            if _FINESS.fullmatch(candidate):
                return candidate
        return None


class Authorities:
    """The `Identifier.system` of assigning authorities, with the configured exceptions."""

    def __init__(self, configured: dict[str, str]) -> None:
        self.configured = configured

    def system(self, authority: Authority) -> str | None:
        for key in (authority.universal_id, authority.namespace):
            if key and key in self.configured:
                return self.configured[key]
        if authority.oid:
            return f"urn:oid:{authority.oid}"
        kind = authority.type.upper()
        if kind == "UUID" and authority.universal_id:
            return f"urn:uuid:{authority.universal_id.lower()}"
        if kind == "URI" and authority.universal_id:
            return authority.universal_id
        key = authority.universal_id or authority.namespace
        return LOCAL_AUTHORITY_BASE + quote(key, safe="") if key else None

    def identifier(
        self, value: str, authority: Authority, fallback: Authority, type_code: str | None = None
    ) -> dict[str, Any]:
        """An Identifier of `value` assigned by `authority` (else by `fallback`)."""
        identifier: dict[str, Any] = {}
        if type_code:
            identifier["type"] = {"coding": [{"system": V2_0203, "code": type_code}]}
        system = self.system(authority) or self.system(fallback)
        if system:
            identifier["system"] = system
        identifier["value"] = value
        return identifier


def parse_authorities(text: str) -> dict[str, str]:
    """`FHIR_HL7V2_AUTHORITIES`: `key=system` pairs, comma-separated; the key is a universal
    id or a namespace id of an assigning authority."""
    configured = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, equals, system = pair.partition("=")
        if not equals or not key.strip() or not system.strip():
            raise ValueError(f"FHIR_HL7V2_AUTHORITIES: {pair!r} is not key=system")
        configured[key.strip()] = system.strip()
    return configured
