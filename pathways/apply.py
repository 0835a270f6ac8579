"""`PlanDefinition/[id]/$apply` (R4 plandefinition-operation-apply): a pathway applied to a
patient becomes a CarePlan and one Task per step and occurrence, in the unit of work of the
operation, so that all of them are stored or none (docs/pathways.md, "$apply").

Idempotent by the CarePlan identifier `<pathway>|<Patient id>|<Encounter id or trigger>`: the
search for it takes the same transaction-scoped advisory lock as a conditional create on
PostgreSQL (SQLite runs writers one at a time), so two concurrent calls for the same trigger
store one CarePlan, and the second answers with it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fhir_server.engine.interaction import Context, Interaction, Kind, Outcome
from fhir_server.engine.lookup import read, search
from fhir_server.engine.unit_of_work import UnitOfWork
from fhir_server.engine.versioning import now
from fhir_server.errors import FhirError, bad_request
from fhir_server.formats.json_format import loads
from fhir_server.operations import Operation
from fhir_server.search.criteria import escape
from fhir_server.search.normalize import date_range
from fhir_server.server import Server
from pathways.canonical import (
    BASE,
    CAREPLAN_IDENTIFIER,
    CAREPLAN_PROFILE,
    FUNDING_EXTENSION,
    PATHWAY_EXTENSION,
    ROLE_SYSTEM,
    STEP_EXTENSION,
    TASK_IDENTIFIER,
    TASK_PROFILE,
)
from pathways.catalogue import SOURCE, Step, fhirpath, read_steps
from pathways.timing import PARIS, due_date, fhir_datetime

if TYPE_CHECKING:
    from fhir_server.engine.engine import Engine

# Who may own a pathway Task (profile pathway-task) as a care-team member.
_OWNER_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization", "CareTeam"})
# Parameters of the R4 operation this server accepts and does not use (user and setting).
_IGNORED = frozenset({"userType", "userLanguage", "userTaskContext", "setting", "settingContext"})
_REFERENCES = {
    "subject": "Patient",
    "encounter": "Encounter",
    "practitioner": "Practitioner",
    "organization": "Organization",
}
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DAY_PRECISION = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Request:
    """The parameters of one call, checked: ids of the resources named, the trigger time."""

    subject: str
    encounter: str | None
    practitioner: str | None
    organization: str | None
    trigger: datetime | None


def run(engine: Engine, uow: UnitOfWork, ix: Interaction, ctx: Context) -> Outcome:
    """Apply the PlanDefinition `ix.id`: 201 with the new CarePlan, or 200 with the one an
    earlier call made for the same trigger."""
    request = _request(ix, ctx)
    context = replace(ctx, source=SOURCE)
    plan = loads(engine.run(uow, Interaction(Kind.READ, "PlanDefinition", ix.id), context).body)
    if plan.get("status") != "active":
        raise _unprocessable(f"PlanDefinition/{ix.id} is {plan.get('status')}, not active")
    steps = read_steps(plan)
    patient = _target(engine, uow, context, "subject", request.subject)
    encounter = _target(engine, uow, context, "encounter", request.encounter)
    if encounter is not None and (encounter.get("subject") or {}).get("reference") != (
        f"Patient/{request.subject}"
    ):
        raise _unprocessable(f"Encounter/{request.encounter} is not a stay of the subject")
    _target(engine, uow, context, "practitioner", request.practitioner)
    _target(engine, uow, context, "organization", request.organization)
    trigger = request.trigger or _encounter_end(encounter) or now()
    key = f"{plan['id']}|{request.subject}|{request.encounter or fhir_datetime(trigger)}"
    identifier = f"{CAREPLAN_IDENTIFIER}|{escape(key)}"
    existing = engine.matches(uow, "CarePlan", [("identifier", identifier)], "$apply", context)
    if existing:
        return engine.run(uow, Interaction(Kind.READ, "CarePlan", existing[0]), context)

    def records(type_: str, criteria: list[tuple[str, str]]) -> list[dict[str, Any]]:
        patient_criterion = ("patient", f"Patient/{request.subject}")
        return list(search(engine, uow, context, type_, [patient_criterion, *criteria]))

    variables = _variables(steps, records, patient, encounter, trigger)
    planner = _Planner(
        plan=plan,
        request=request,
        key=key,
        trigger=trigger,
        encounter=encounter,
        careteams=records("CareTeam", [("status", "active")]),
        applies={step.id: _applies(step, patient, variables) for step in steps},
    )
    tasks = planner.tasks(steps)
    created = engine.run(uow, _create(planner.careplan(tasks)), context)
    for task in tasks:
        engine.run(uow, _create(task), context)
    return created


APPLY = Operation(
    name="apply",
    definition=f"{BASE}/OperationDefinition/PlanDefinition-apply",
    run=run,
    instance=True,
    resource_types=frozenset({"PlanDefinition"}),
    affects_state=True,
)


def install(server: Server) -> None:
    server.engine.register_operation(APPLY)


# -- parameters -----------------------------------------------------------------------------------


def _request(ix: Interaction, ctx: Context) -> Request:
    """The parameters, from a Parameters body and the URL."""
    values: dict[str, list[str]] = {}
    if ix.resource is not None:
        if ix.resource.get("resourceType") != "Parameters":
            raise bad_request("$apply takes a Parameters resource")
        for parameter in ix.resource.get("parameter", []):
            values.setdefault(parameter.get("name", ""), []).append(_value(parameter))
    for name, value in ix.params:
        values.setdefault(name, []).append(value)
    unknown = set(values) - set(_REFERENCES) - {"trigger"} - _IGNORED
    if unknown:
        raise bad_request(f"$apply does not take {', '.join(sorted(map(repr, unknown)))}")
    for name, found in values.items():
        if name not in _IGNORED and len(found) > 1:
            raise bad_request(f"$apply takes one {name}, got {len(found)}", name)
    if "subject" not in values:
        raise bad_request(
            "$apply needs a subject: the Patient the pathway is applied to", "subject"
        )
    ids = {
        name: _reference_id(values[name][0], type_, name, ctx.base_url) if name in values else None
        for name, type_ in _REFERENCES.items()
    }
    trigger = _trigger(values["trigger"][0]) if "trigger" in values else None
    return Request(
        ids["subject"], ids["encounter"], ids["practitioner"], ids["organization"], trigger
    )


def _value(parameter: dict[str, Any]) -> str:
    for key in ("valueString", "valueUri", "valueId", "valueDateTime", "valueDate", "valueInstant"):
        if isinstance(parameter.get(key), str):
            return parameter[key]
    reference = (parameter.get("valueReference") or {}).get("reference")
    if isinstance(reference, str):
        return reference
    raise bad_request(
        f"$apply parameter {parameter.get('name')!r} needs a string, reference or dateTime value",
        parameter.get("name"),
    )


def _reference_id(value: str, type_: str, name: str, base_url: str) -> str:
    """`Type/id` (or `[base]/Type/id`) → id; anything else is a 400."""
    found_type, _, id_ = value.removeprefix(base_url.rstrip("/") + "/").partition("/")
    if found_type != type_ or not _ID.fullmatch(id_):
        raise bad_request(f"$apply {name} must be a reference {type_}/[id], not {value!r}", name)
    return id_


def _trigger(value: str) -> datetime:
    """A FHIR dateTime of at least a day: a date is the start of that day, a time without a
    zone is read in Europe/Paris."""
    try:
        if not _DAY_PRECISION.match(value):
            raise ValueError(value)
        return date_range(value, PARIS)[0]
    except ValueError:
        raise bad_request(
            f"$apply trigger must be a dateTime with at least a day, not {value!r}", "trigger"
        ) from None


def _unprocessable(text: str) -> FhirError:
    return FhirError.of(422, "processing", text)


# -- what the plan reads --------------------------------------------------------------------------


def _target(
    engine: Engine, uow: UnitOfWork, ctx: Context, name: str, id_: str | None
) -> dict[str, Any] | None:
    """The resource a parameter names; a missing or deleted one is a 422."""
    if id_ is None:
        return None
    reference = f"{_REFERENCES[name]}/{id_}"
    found = read(engine, uow, ctx, reference)
    if found is None:
        raise _unprocessable(f"$apply {name}: {reference} is not known")
    return found


def _encounter_end(encounter: dict[str, Any] | None) -> datetime | None:
    end = ((encounter or {}).get("period") or {}).get("end")
    return date_range(end, PARIS)[0] if end else None


def _variables(
    steps: list[Step],
    records: Callable[[str, list[tuple[str, str]]], list[dict[str, Any]]],
    patient: dict[str, Any],
    encounter: dict[str, Any] | None,
    trigger: datetime,
) -> dict[str, Any]:
    """The variables of the step conditions (docs/pathways.md); the patient's Conditions and
    Observations are searched only when a condition reads them."""
    used = " ".join(condition for step in steps for condition in step.conditions)
    variables: dict[str, Any] = {
        "subject": patient,
        "encounter": [encounter] if encounter else [],
        "trigger": fhir_datetime(trigger),
    }
    if "%conditions" in used:
        variables["conditions"] = [
            condition
            for condition in records("Condition", [])
            if not _entered_in_error(condition.get("verificationStatus"))
        ]
    if "%observations" in used:
        variables["observations"] = records(
            "Observation", [("status", "final,amended,corrected"), ("_sort", "-date")]
        )
    return variables


def _entered_in_error(status: dict[str, Any] | None) -> bool:
    return any(c.get("code") == "entered-in-error" for c in (status or {}).get("coding", []))


def _applies(step: Step, patient: dict[str, Any], variables: dict[str, Any]) -> bool:
    """Whether every condition of the step holds: FHIRPath on the patient, true or false."""
    for condition in step.conditions:
        try:
            result = fhirpath(condition)(patient, variables)
        except Exception as exc:  # fhirpathpy raises bare Exceptions on evaluation errors
            raise _unprocessable(f"The condition of step {step.id} failed: {exc}") from None
        if result not in ([], [True], [False]):
            raise _unprocessable(f"The condition of step {step.id} is not a boolean: {result!r}")
        if result != [True]:
            return False
    return True


# -- the plan -------------------------------------------------------------------------------------


@dataclass
class _Planned:
    """A Task planned: what the steps depending on it need."""

    id: str
    due: datetime


@dataclass
class _Planner:
    """The CarePlan and Tasks of one call."""

    plan: dict[str, Any]
    request: Request
    key: str  # the CarePlan identifier value
    trigger: datetime
    encounter: dict[str, Any] | None
    careteams: list[dict[str, Any]]
    applies: dict[str, bool]  # step id → whether its conditions hold
    careplan_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    authored: datetime = field(default_factory=now)

    def tasks(self, steps: list[Step]) -> list[dict[str, Any]]:
        """One Task per step that applies and per occurrence (steps come after those they
        depend on). A step waiting for others is draft, anchored on the latest of their due
        dates, provisionally: progression re-anchors it when they are completed."""
        by_id = {step.id: step for step in steps}
        planned: dict[str, list[_Planned]] = {}
        holders = self.role_holders()
        tasks = []

        def predecessors(step: Step) -> list[str]:  # a step left out hands on its own
            found: list[str] = []
            for other in step.after:
                found += [other] if self.applies[other] else predecessors(by_id[other])
            return list(dict.fromkeys(found))

        for step in steps:
            if not self.applies[step.id]:
                continue
            waits_for = [task for other in predecessors(step) for task in planned[other]]
            anchor = self.trigger
            if waits_for:
                anchor = max(task.due for task in waits_for)
                if step.offset:
                    anchor = due_date(anchor, step.offset)
            owner = self.owner(step.role.get("code", ""), holders)
            planned[step.id] = []
            for occurrence in range(1, step.count + 1):
                due = due_date(anchor, step.due_within(occurrence))
                task = self.task(step, occurrence, (anchor, due), waits_for, owner)
                planned[step.id].append(_Planned(task["id"], due))
                tasks.append(task)
        return tasks

    def task(
        self,
        step: Step,
        occurrence: int,
        window: tuple[datetime, datetime],  # the anchor and the due date
        waits_for: list[_Planned],
        owner: dict[str, str] | None,
    ) -> dict[str, Any]:
        within = step.due_within(occurrence)
        rules: list[dict[str, Any]] = [{"url": "dueWithin", "valueDuration": within}]
        rules += [
            {"url": "dependsOn", "valueReference": {"reference": f"Task/{task.id}"}}
            for task in waits_for
        ]
        if waits_for and step.offset:
            rules.append({"url": "offset", "valueDuration": step.offset})
        rules += [
            {"url": "required", "valueBoolean": step.required},
            {"url": "occurrence", "valueInteger": occurrence},
        ]
        extensions = [self.pathway_extension(), {"url": STEP_EXTENSION, "extension": rules}]
        if step.funding:
            extensions.append({"url": FUNDING_EXTENSION, "valueCoding": step.funding})
        task: dict[str, Any] = {
            "resourceType": "Task",
            "id": str(uuid.uuid4()),
            "meta": {"profile": [TASK_PROFILE]},
            "extension": extensions,
            "identifier": [
                {"system": TASK_IDENTIFIER, "value": f"{self.key}|{step.id}|{occurrence}"}
            ],
            "instantiatesCanonical": step.definition,
            "basedOn": [{"reference": f"CarePlan/{self.careplan_id}"}],
            "status": "draft" if waits_for else "requested",
            "intent": "order",
            "priority": step.priority,
            "code": {"coding": [step.code], "text": step.title},
            "description": step.title,
            "for": {"reference": f"Patient/{self.request.subject}"},
            **self.encounter_reference(),
            "authoredOn": fhir_datetime(self.authored),
            **self.requester("requester"),
        }
        if owner is not None:
            task["owner"] = owner
        task["performerType"] = [{"coding": [step.role]}]
        task["restriction"] = {
            "period": {"start": fhir_datetime(window[0]), "end": fhir_datetime(window[1])}
        }
        return task

    def role_holders(self) -> dict[str, dict[str, str]]:
        """Care role → the first current participant holding it in the active CareTeams."""
        holders: dict[str, dict[str, str]] = {}
        for team in self.careteams:
            for participant in team.get("participant", []):
                member = (participant.get("member") or {}).get("reference", "")
                if member.partition("/")[0] not in _OWNER_TYPES or not _current(
                    participant.get("period"), self.authored
                ):
                    continue
                for role in participant.get("role", []):
                    for coding in role.get("coding", []):
                        if coding.get("system") == ROLE_SYSTEM:
                            holders.setdefault(coding.get("code", ""), {"reference": member})
        return holders

    def owner(self, role: str, holders: dict[str, dict[str, str]]) -> dict[str, str] | None:
        """Who a step is given to: the patient for the patient's own steps, the hospital of
        the stay for the hospital's, else the care-team member holding the role; None: the
        task is unassigned."""
        if role == "patient":
            return {"reference": f"Patient/{self.request.subject}"}
        provider = ((self.encounter or {}).get("serviceProvider") or {}).get("reference")
        if role == "hospital" and provider:
            return {"reference": provider}
        return holders.get(role)

    def careplan(self, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        plan, request = self.plan, self.request
        careplan: dict[str, Any] = {
            "resourceType": "CarePlan",
            "id": self.careplan_id,
            "meta": {"profile": [CAREPLAN_PROFILE]},
            "extension": [self.pathway_extension()],
            "identifier": [{"system": CAREPLAN_IDENTIFIER, "value": self.key}],
            "instantiatesCanonical": [
                f"{plan['url']}|{plan['version']}" if plan.get("version") else plan["url"]
            ],
            "status": "active",
            "intent": "plan",
            "category": [{"coding": [self.pathway_extension()["valueCoding"]]}],
            "title": plan.get("title") or plan["id"],
            "subject": {"reference": f"Patient/{request.subject}"},
            **self.encounter_reference(),
            "period": {"start": fhir_datetime(self.trigger)},
            "created": fhir_datetime(self.authored),
            **self.requester("author"),
        }
        if request.practitioner:
            careplan["contributor"] = [{"reference": f"Practitioner/{request.practitioner}"}]
        if self.careteams:
            careplan["careTeam"] = [{"reference": f"CareTeam/{t['id']}"} for t in self.careteams]
        careplan["activity"] = [{"reference": {"reference": f"Task/{t['id']}"}} for t in tasks]
        return careplan

    def pathway_extension(self) -> dict[str, Any]:
        coding = {"system": f"{BASE}/CodeSystem/pathway", "code": self.plan["id"]}
        return {"url": PATHWAY_EXTENSION, "valueCoding": coding}

    def encounter_reference(self) -> dict[str, Any]:
        if self.request.encounter is None:
            return {}
        return {"encounter": {"reference": f"Encounter/{self.request.encounter}"}}

    def requester(self, element: str) -> dict[str, Any]:
        """The CPTS applying the pathway, else the professional."""
        if self.request.organization:
            return {element: {"reference": f"Organization/{self.request.organization}"}}
        if self.request.practitioner:
            return {element: {"reference": f"Practitioner/{self.request.practitioner}"}}
        return {}


def _current(period: dict[str, Any] | None, moment: datetime) -> bool:
    """Whether a participation period (absent: always) covers `moment`."""
    period = period or {}
    start = date_range(period["start"], PARIS)[0] if period.get("start") else None
    end = date_range(period["end"], PARIS)[1] if period.get("end") else None
    return (start is None or start <= moment) and (end is None or moment < end)


def _create(resource: dict[str, Any]) -> Interaction:
    return Interaction(
        Kind.CREATE, resource["resourceType"], resource["id"], resource=resource, method="POST"
    )
