"""The CapabilityStatement (`GET /metadata`): built from what the server actually has — its
resource types, interactions, search parameters and operations — so it cannot drift from it."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from fhir_server import __version__
from fhir_server.conformance import READ_ONLY_TYPES
from fhir_server.engine.interaction import Context
from fhir_server.model.registry import resource_types
from fhir_server.operations import Operation
from fhir_server.search.parameters import Registry
from fhir_server.storage.schema import AUDIT_TRAIL

if TYPE_CHECKING:
    from fhir_server.engine.engine import Engine

RELEASE_DATE = "2026-11-24"
_TYPE_INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]
_READ_INTERACTIONS = ["read", "vread", "history-instance", "history-type", "search-type"]
_SYSTEM_INTERACTIONS = ["transaction", "batch", "search-system", "history-system"]
_COMMON = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source")


SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


def capability_statement(engine: Engine, context: Context) -> dict[str, Any]:
    operations = tuple(sorted(engine.operations.values(), key=lambda o: o.name))
    settings = engine.settings
    own_issuer = settings.auth_jwks is None
    secured = settings.security_enabled
    return _statement(engine.search.registry, context.base_url, operations, secured, own_issuer)


@lru_cache(maxsize=8)
def _statement(
    registry: Registry,
    base_url: str,
    operations: tuple[Operation, ...],
    secured: bool,
    own_issuer: bool,
) -> dict[str, Any]:
    read_only = READ_ONLY_TYPES | ({AUDIT_TRAIL} if secured else set())
    resources = []
    for type_ in sorted(resource_types()):
        params = registry.for_type(type_)
        writable = type_ not in read_only
        resources.append(
            {
                "type": type_,
                "interaction": [
                    {"code": code}
                    for code in (_TYPE_INTERACTIONS if writable else _READ_INTERACTIONS)
                ],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": writable,
                "conditionalCreate": writable,
                "conditionalRead": "full-support",
                "conditionalUpdate": writable,
                "conditionalDelete": "single" if writable else "not-supported",
                "referencePolicy": ["literal", "logical"],
                "searchParam": [
                    {"name": p.code, "definition": p.url, "type": p.type}
                    for code, p in sorted(params.items())
                    if code not in _COMMON
                ],
                **_operations(
                    o
                    for o in operations
                    if (o.type or o.instance)
                    and (o.resource_types is None or type_ in o.resource_types)
                ),
            }
        )
    common = registry.for_type("Patient")
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": RELEASE_DATE,
        "publisher": "CPTS FHIR server",
        "kind": "instance",
        "software": {"name": "cpts-fhir-server", "version": __version__},
        "implementation": {
            "description": "FHIR R4 server for the care pathways of CPTS",
            "url": base_url,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml"],
        "patchFormat": [
            "application/json-patch+json",
            "application/fhir+json",
            "application/fhir+xml",
        ],
        "rest": [
            {
                "mode": "server",
                **(_security(base_url, own_issuer) if secured else {}),
                "resource": resources,
                "interaction": [{"code": code} for code in _SYSTEM_INTERACTIONS],
                "searchParam": [
                    {"name": code, "definition": common[code].url, "type": common[code].type}
                    for code in _COMMON
                    if code in common
                ],
                **_operations(o for o in operations if o.system),
            }
        ],
    }


def _security(base_url: str, own_issuer: bool) -> dict[str, Any]:
    """SMART App Launch's declaration (conformance.html): OAuth2 bearer tokens; the token
    endpoint when the server issues tokens itself (client credentials)."""
    security: dict[str, Any] = {
        "cors": False,
        "service": [{"coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}]}],
        "description": "OAuth2 bearer tokens (JWT) with SMART v2 scopes; access by role, care "
        "team, tasks, pathways and the patient's consent; every access audited. See "
        f"{base_url}/.well-known/smart-configuration",
    }
    if own_issuer:
        security["extension"] = [
            {
                "url": SMART_OAUTH_URIS,
                "extension": [{"url": "token", "valueUri": f"{base_url}/auth/token"}],
            }
        ]
    return {"security": security}


def _operations(operations: Iterable[Operation]) -> dict[str, Any]:
    declared = [{"name": o.name, "definition": o.definition} for o in operations]
    return {"operation": declared} if declared else {}
