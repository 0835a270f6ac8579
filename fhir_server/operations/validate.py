"""`$validate` (R4 resource-operations.html#validate) at type and instance level: would this
content be accepted (mode absent, create, update), or may this resource be deleted (delete)?
The answer is an OperationOutcome, 200 whether or not it lists errors; a request the operation
cannot understand is a 400."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.engine.interaction import Context, Interaction, Outcome
from fhir_server.engine.unit_of_work import UnitOfWork
from fhir_server.errors import FhirError, Issue, bad_request, gone, not_found, operation_outcome
from fhir_server.formats.json_format import loads
from fhir_server.model.structure import check_resource
from fhir_server.operations import Operation
from fhir_server.validation.hook import ProfileValidation

if TYPE_CHECKING:
    from fhir_server.engine.engine import Engine

MODES = ("create", "update", "delete")


def _inputs(ix: Interaction) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """The resource, mode and profile, from a Parameters body, a bare resource, or the URL."""
    body, mode, profile = ix.resource, None, None
    resource = None
    if body is not None and body.get("resourceType") == "Parameters":
        for parameter in body.get("parameter", []):
            name = parameter.get("name")
            if name == "resource":
                resource = parameter.get("resource")
            elif name == "mode":
                mode = parameter.get("valueCode")
            elif name == "profile":
                profile = parameter.get("valueUri") or parameter.get("valueCanonical")
    elif body is not None:
        resource = body
    for name, value in ix.params:
        if name == "mode":
            mode = value
        elif name == "profile":
            profile = value
    if mode is not None and mode not in MODES:
        raise bad_request(f"$validate mode must be one of {', '.join(MODES)}, not {mode!r}")
    return resource, mode, profile


def _outcome(issues: list[Issue]) -> Outcome:
    if not issues:
        issues = [Issue("informational", "No issues: the resource is valid", "information")]
    return Outcome(200, resource=operation_outcome(issues))


def make(validation: ProfileValidation) -> Operation:
    def run(engine: Engine, uow: UnitOfWork, ix: Interaction, _ctx: Context) -> Outcome:
        resource, mode, profile = _inputs(ix)
        if mode == "delete":
            if ix.id is None:
                raise bad_request("$validate mode=delete is invoked on the resource to delete")
            stored = uow.repository.read(ix.type, ix.id)
            if stored is None:
                raise not_found(f"{ix.type}/{ix.id} is not known")
            if stored.body is None:
                raise gone(f"{ix.type}/{ix.id} is already deleted")
            return _outcome([])
        if resource is None and ix.id is not None:  # validate what is stored
            stored = uow.repository.read(ix.type, ix.id)
            if stored is None or stored.body is None:
                raise not_found(f"{ix.type}/{ix.id} is not known")
            resource = loads(stored.body)
        if resource is None:
            raise bad_request("$validate needs a resource (or mode=delete)")
        if resource.get("resourceType") != ix.type:
            raise bad_request(f"$validate on {ix.type} was given a {resource.get('resourceType')}")
        issues: list[Issue] = []
        if mode == "update":
            if not resource.get("id"):
                issues.append(
                    Issue("required", "An update needs the resource id", "error", f"{ix.type}.id")
                )
            elif ix.id is not None and resource["id"] != ix.id:
                issues.append(
                    Issue(
                        "invalid",
                        f"The id {resource['id']!r} is not {ix.id!r}",
                        "error",
                        f"{ix.type}.id",
                    )
                )
        try:
            check_resource(resource, ix.type)
        except FhirError as exc:
            return _outcome(issues + exc.issues)
        profiles = [profile] if profile else None
        return _outcome(issues + validation.check(resource, profiles))

    return Operation(
        name="validate",
        definition="http://hl7.org/fhir/OperationDefinition/Resource-validate",
        run=run,
        type=True,
        instance=True,
    )
