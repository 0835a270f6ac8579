"""Validation in the interaction pipeline: a BEFORE_STORAGE hook checks every version written
against the base required bindings, its `meta.profile` and the profiles required for its type
(FHIR_REQUIRED_PROFILES); any error refuses the write with 422 and nothing is stored."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fhir_server.engine.hooks import HookPoint
from fhir_server.engine.interaction import Context
from fhir_server.engine.unit_of_work import Change, UnitOfWork
from fhir_server.errors import FhirError, Issue
from fhir_server.validation.validator import Validator

if TYPE_CHECKING:
    from fhir_server.server import Server


def parse_required(text: str) -> dict[str, tuple[str, ...]]:
    """`Patient=url,Practitioner=url` → {"Patient": ("url",), ...}."""
    required: dict[str, list[str]] = defaultdict(list)
    for pair in filter(None, (p.strip() for p in text.split(","))):
        type_, equals, url = pair.partition("=")
        if not equals or not type_.strip() or not url.strip():
            raise ValueError(f"FHIR_REQUIRED_PROFILES: {pair!r} is not Type=canonical")
        required[type_.strip()].append(url.strip())
    return {type_: tuple(urls) for type_, urls in required.items()}


class ProfileValidation:
    def __init__(self, validator: Validator, required: dict[str, tuple[str, ...]]) -> None:
        self.validator = validator
        self.required = required

    def profiles_for(self, resource: dict[str, Any]) -> list[str]:
        claimed = (resource.get("meta") or {}).get("profile", [])
        return [*claimed, *self.required.get(resource["resourceType"], ())]

    def check(self, resource: dict[str, Any], profiles: Sequence[str] | None = None) -> list[Issue]:
        chosen = self.profiles_for(resource) if profiles is None else profiles
        return self.validator.validate(resource, chosen)

    def before_storage(self, _context: Context, change: Change, _uow: UnitOfWork) -> None:
        if change.resource is None:  # a deletion
            return
        issues = self.check(change.resource)
        # A claimed profile the server does not know cannot be checked: R4 lets a server
        # accept the resource anyway (profiling.html), as it must accept profiles of other IGs.
        if any(
            issue.severity in ("error", "fatal") and issue.code != "not-supported"
            for issue in issues
        ):
            raise FhirError(422, issues)


def install(server: Server) -> ProfileValidation:
    validator = Validator()
    required = parse_required(server.settings.required_profiles)
    known = {d["url"] for d in validator.structure_definitions()}
    unknown = sorted({url for urls in required.values() for url in urls} - known)
    if unknown:
        raise ValueError(f"FHIR_REQUIRED_PROFILES names unknown profiles: {', '.join(unknown)}")
    validation = ProfileValidation(validator, required)
    server.hooks.register(HookPoint.BEFORE_STORAGE, validation.before_storage)
    return validation
