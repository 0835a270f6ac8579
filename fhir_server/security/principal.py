"""Who is asking: the authenticated user or system a request acts for."""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_server.security.scopes import Scopes

# Roles of the CPTS (docs/security.md lists what each may do).
HOSPITAL = "hospital"
GP = "gp"
PHARMACIST = "pharmacist"
IDEL = "idel"
COORDINATOR = "coordinator"
AUDITOR = "auditor"
ADMIN = "admin"
ROLES = (HOSPITAL, GP, PHARMACIST, IDEL, COORDINATOR, AUDITOR, ADMIN)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller, from a verified token (or a door's configuration).

    `fhir_user` is the FHIR resource the user is (`Practitioner/123`): a professional's access
    to patients follows from it. `patient` is the launch context of `patient/` scopes. A system
    client (client credentials) has neither.
    """

    subject: str
    roles: frozenset[str]
    scopes: Scopes
    fhir_user: str | None = None
    patient: str | None = None
    client_id: str | None = None
    issuer: str | None = None
    token_id: str | None = None  # jti: which token, for the audit trail
    address: str | None = field(default=None, compare=False)  # network origin of the request

    @property
    def is_system(self) -> bool:
        return self.fhir_user is None and self.patient is None
