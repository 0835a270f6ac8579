"""Triggers: the outbox consumer `pathway-triggers` that turns committed clinical events into
pathway work, after the commit and never inside the request that stored them.

The rules are data (`triggers.json`, described in docs/pathways.md): a resource type, FHIRPath
conditions on the new version and on the one before it (transitions: the stay became finished),
the patient, the trigger time and an action:

- `apply-pathway`: `PlanDefinition/<pathway>/$apply` through the engine (idempotent: applying
  the same pathway for the same trigger creates nothing);
- `notify-care-team`: a Communication to every professional of the patient's active care teams
  (an admission);
- `hold-pathways` / `resume-pathways`: a rehospitalisation puts the open tasks of the patient's
  pathways on hold and flags their CarePlans; the discharge of that stay resumes them with
  deadlines re-planned from the discharge;
- `alert-coordinator`: a Task for the coordinator when a discharge falls when community
  professionals are away (weekend, public holiday, their eves from noon).

Everything runs inside the unit of work that marks the outbox event done, so an event's effects
commit once or not at all; every creation is conditional on an identifier, so an event handled
twice (a retry after a crash) creates nothing more. A patient's opposition to exchange (an active
opposition Consent) stops the rules that say `unlessOpposed`; only counts are logged.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from fhir_server.engine.engine import Engine
from fhir_server.engine.interaction import Context, Interaction, Kind, Outcome
from fhir_server.engine.lookup import create_once, read, search
from fhir_server.engine.unit_of_work import Change, UnitOfWork
from fhir_server.errors import FhirError
from fhir_server.formats.json_format import loads
from fhir_server.outbox import OutboxEvent
from fhir_server.search.criteria import escape
from fhir_server.search.normalize import date_range
from fhir_server.server import Server
from pathways.canonical import (
    BUSINESS_STATUS_SYSTEM,
    CAREPLAN_IDENTIFIER,
    FLAG_IDENTIFIER,
    NOTICE_IDENTIFIER,
    PATHWAY_SYSTEM,
)
from pathways.catalogue import fhirpath
from pathways.deadlines import (
    business_status,
    coordinator_of,
    coordinator_task,
    has_coding,
)
from pathways.lifecycle import HOLDABLE, status_before_hold
from pathways.progression import step
from pathways.timing import PARIS, due_date, fhir_datetime

log = logging.getLogger(__name__)

RULES_FILE = Path(__file__).with_name("triggers.json")
CONSUMER = "pathway-triggers"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_RULED_OUT = ("refuted", "entered-in-error")
REHOSPITALISED = "rehospitalised"
# Members of a care team told of an admission: professionals and organisations, not the
# patient nor relatives.
_NOTIFIED = ("Practitioner/", "PractitionerRole/", "Organization/", "CareTeam/")

Expression = Callable[..., list[Any]]


# -- the rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OffHours:
    """When community professionals are away: weekends and public holidays, and their eves
    from `eve_from` (Friday afternoon, the afternoon before a holiday)."""

    calendar: holidays.HolidayBase
    zone: ZoneInfo
    eve_from: time

    def __contains__(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone)
        day = local.date()
        return self._closed(day) or (
            local.time() >= self.eve_from and self._closed(day + timedelta(days=1))
        )

    def _closed(self, day: Any) -> bool:
        return day.weekday() >= 5 or day in self.calendar


@dataclass(frozen=True)
class Rule:
    id: str
    resource_type: str
    action: str
    when: Expression
    previous: Expression | None
    subject: Expression
    time: Expression
    encounter: Expression | None
    practitioner: Expression | None
    unless_opposed: bool
    variables: frozenset[str]  # the lazily computed FHIRPath variables `when` uses
    options: dict[str, Any]  # the action's own settings (pathway, code, message, offHours)


@dataclass(frozen=True)
class Rules:
    by_type: dict[str, list[Rule]]
    icd10_systems: frozenset[str]
    off_hours: OffHours


def load_rules(path: Path = RULES_FILE) -> Rules:
    """The rules of a triggers file; an unknown action is an error at start-up."""
    data = json.loads(path.read_text(encoding="utf-8"))
    by_type: dict[str, list[Rule]] = {}
    for row in data["rules"]:
        if row["action"] not in ACTIONS:
            raise ValueError(f"trigger rule {row['id']}: unknown action {row['action']!r}")
        optional = {
            key: fhirpath(row[key])
            for key in ("previous", "encounter", "practitioner")
            if row.get(key)
        }
        rule = Rule(
            id=row["id"],
            resource_type=row["resourceType"],
            action=row["action"],
            when=fhirpath(row["when"]),
            previous=optional.get("previous"),
            subject=fhirpath(row["subject"]),
            time=fhirpath(row["time"]),
            encounter=optional.get("encounter"),
            practitioner=optional.get("practitioner"),
            unless_opposed=bool(row.get("unlessOpposed")),
            variables=frozenset(v for v in ("icd10", "patient") if f"%{v}" in row["when"]),
            options={
                k: v for k, v in row.items() if k in ("pathway", "code", "message", "offHours")
            },
        )
        by_type.setdefault(rule.resource_type, []).append(rule)
    calendar = data["offHours"]
    off_hours = OffHours(
        holidays.country_holidays(calendar["holidays"], subdiv=calendar.get("subdivision")),
        ZoneInfo(calendar["timezone"]),
        time.fromisoformat(calendar["eveFrom"]),
    )
    return Rules(by_type, frozenset(data["icd10Systems"]), off_hours)


# -- the consumer -------------------------------------------------------------------------------


@dataclass
class Handling:
    """One committed version being checked against the rules, with what rules may read
    besides it, read on first use."""

    engine: Engine
    uow: UnitOfWork
    context: Context
    rules: Rules
    resource: dict[str, Any]

    def run(self, interaction: Interaction) -> Outcome:
        return self.engine.run(self.uow, interaction, self.context)

    def read(self, reference: str | None) -> dict[str, Any] | None:
        return read(self.engine, self.uow, self.context, reference)

    def search(self, type_: str, criteria: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return list(search(self.engine, self.uow, self.context, type_, criteria))

    def create_once(self, resource: dict[str, Any]) -> Outcome:
        return create_once(self.engine, self.uow, self.context, resource)

    def update(self, resource: dict[str, Any]) -> None:
        """Write a new version of a resource read in this unit of work, with If-Match: a
        concurrent change fails the event, which the outbox retries on fresh data."""
        self.run(
            Interaction(
                Kind.UPDATE,
                resource["resourceType"],
                resource["id"],
                resource=resource,
                if_match=resource["meta"]["versionId"],
            )
        )

    @cached_property
    def icd10(self) -> list[str]:
        """The ICD-10 codes (no dots, upper case) of the diagnoses of an Encounter."""
        concepts = list(self.resource.get("reasonCode", []))
        conditions = [
            self.read((d.get("condition") or {}).get("reference"))
            for d in self.resource.get("diagnosis", [])
        ]
        encounter = f"{self.resource['resourceType']}/{self.resource['id']}"
        conditions += self.search("Condition", [("encounter", encounter)])
        concepts += [c.get("code", {}) for c in conditions if c is not None and not _ruled_out(c)]
        return sorted(
            {
                coding["code"].replace(".", "").replace(" ", "").upper()
                for concept in concepts
                for coding in concept.get("coding", [])
                if coding.get("system") in self.rules.icd10_systems and coding.get("code")
            }
        )

    def variables(self, rule: Rule, moment: str, patient: str) -> dict[str, Any]:
        env: dict[str, Any] = {"time": moment}
        if "icd10" in rule.variables:
            env["icd10"] = self.icd10
        if "patient" in rule.variables:
            env["patient"] = self.read(patient) or {}
        return env


class PathwayTriggers:
    """The outbox consumer: checks each committed version against the rules of its type."""

    name = CONSUMER

    def __init__(self, engine: Engine, rules: Rules) -> None:
        self.engine = engine
        self.rules = rules
        # Outbox rows are written for the types the rules read only.
        self.resource_types = frozenset(rules.by_type)
        self.resource_types = frozenset(rules.by_type)
        self.opposed: Counter[str] = Counter()  # rules not run because the patient opposes

    def handle(self, event: OutboxEvent, uow: UnitOfWork, context: Context) -> None:
        rules = self.rules.by_type.get(event.resource_type)
        if not rules or event.interaction == "delete":
            return
        current = _version(self.engine, uow, context, event, event.version)
        if current is None:
            return
        previous = (
            _version(self.engine, uow, context, event, event.version - 1)
            if event.version > 1
            else None
        )
        handling = Handling(self.engine, uow, context, self.rules, current)
        for rule in rules:
            if previous is not None and rule.previous and not _true(rule.previous(previous)):
                continue
            patient = _first(rule.subject(current))
            moment = str(_first(rule.time(current)) or "")
            try:
                at = date_range(moment, PARIS)[0]
            except ValueError:  # no trigger time: nothing can be planned
                continue
            if not (isinstance(patient, str) and patient.startswith("Patient/")):
                continue
            if not _true(rule.when(current, handling.variables(rule, moment, patient))):
                continue
            if rule.unless_opposed and opposes_exchange(handling, patient, at):
                self.opposed[rule.id] += 1
                log.info(
                    "trigger %s not run: the patient opposes exchange (%d so far)",
                    rule.id,
                    self.opposed[rule.id],
                )
                continue
            ACTIONS[rule.action](handling, rule, Trigger(patient, moment, at, current))


@dataclass(frozen=True)
class Trigger:
    """What a rule found: the patient, the trigger time (as written, and parsed), the resource."""

    patient: str
    written: str
    at: datetime
    resource: dict[str, Any] = field(repr=False)

    @property
    def reference(self) -> str:
        return f"{self.resource['resourceType']}/{self.resource['id']}"


def _version(
    engine: Engine, uow: UnitOfWork, ctx: Context, event: OutboxEvent, version: int
) -> dict[str, Any] | None:
    """The content of one version (None for a deletion or a version that is gone)."""
    try:
        outcome = engine.run(
            uow,
            Interaction(Kind.VREAD, event.resource_type, event.resource_id, version=str(version)),
            ctx,
        )
    except FhirError as exc:
        if exc.status in (404, 410):
            return None
        raise
    return loads(outcome.body)


def _ruled_out(condition: dict[str, Any]) -> bool:
    """A Condition recorded as refuted or entered in error is no diagnosis."""
    status = condition.get("verificationStatus", {})
    return any(has_coding([status], VERIFICATION_SYSTEM, code) for code in _RULED_OUT)


def _first(values: list[Any]) -> Any:
    return values[0] if values else None


def _true(values: list[Any]) -> bool:
    return values == [True]


# -- consent ------------------------------------------------------------------------------------


def opposes_exchange(handling: Handling, patient: str, at: datetime) -> bool:
    """Whether the patient opposes the exchange of their data within the care team at `at`: an
    active Consent of scope patient-privacy, category information disclosure (v3 ActCode
    IDSCL), whose base provision denies, to everyone (no actor), over a period covering `at`."""
    consents = handling.search(
        "Consent",
        [
            ("patient", patient),
            ("status", "active"),
            ("scope", f"{CONSENT_SCOPE}|patient-privacy"),
            ("category", f"{ACT_CODE}|IDSCL"),
        ],
    )
    for consent in consents:
        provision = consent.get("provision") or {}
        if provision.get("type") != "deny" or provision.get("actor"):
            continue
        period = provision.get("period") or {}
        if period.get("start") and date_range(period["start"], PARIS)[0] > at:
            continue
        if period.get("end") and date_range(period["end"], PARIS)[1] <= at:
            continue
        return True
    return False


# -- actions ------------------------------------------------------------------------------------


def apply_pathway(handling: Handling, rule: Rule, trigger: Trigger) -> None:
    """`PlanDefinition/<pathway>/$apply` for the patient, the stay and the trigger time."""
    parameters = [{"name": "subject", "valueReference": {"reference": trigger.patient}}]
    for name, expression in (("encounter", rule.encounter), ("practitioner", rule.practitioner)):
        reference = _first(expression(trigger.resource)) if expression else None
        # only a resource of this server: a reference to an unknown one would fail $apply
        if (
            isinstance(reference, str)
            and reference.startswith(f"{name.capitalize()}/")
            and handling.read(reference) is not None
        ):
            parameters.append({"name": name, "valueReference": {"reference": reference}})
    if (cpts := managing_organization(handling, trigger.patient)) is not None:
        parameters.append({"name": "organization", "valueReference": {"reference": cpts}})
    parameters.append({"name": "trigger", "valueDateTime": trigger.written})
    handling.run(
        Interaction(
            Kind.OPERATION,
            "PlanDefinition",
            rule.options["pathway"],
            operation="apply",
            resource={"resourceType": "Parameters", "parameter": parameters},
            method="POST",
        )
    )


def managing_organization(handling: Handling, patient: str) -> str | None:
    """The CPTS of a patient: the managing Organization of their first active CareTeam that
    names one of this server's Organizations."""
    for team in handling.search("CareTeam", [("patient", patient), ("status", "active")]):
        for organization in team.get("managingOrganization", []):
            reference = organization.get("reference")
            if (
                isinstance(reference, str)
                and reference.startswith("Organization/")
                and handling.read(reference) is not None
            ):
                return reference
    return None


def notify_care_team(handling: Handling, rule: Rule, trigger: Trigger) -> None:
    """One Communication per professional of the patient's active care teams."""
    members: list[str] = []
    for team in handling.search("CareTeam", [("patient", trigger.patient), ("status", "active")]):
        for participant in team.get("participant", []):
            member = (participant.get("member") or {}).get("reference", "")
            ended = (participant.get("period") or {}).get("end")
            if ended and date_range(ended, PARIS)[1] <= trigger.at:
                continue
            if member.startswith(_NOTIFIED) and member not in members:
                members.append(member)
    text = _message(rule, trigger.at)
    sender = (trigger.resource.get("serviceProvider") or {}).get("reference")
    for member in members:
        notice: dict[str, Any] = {
            "resourceType": "Communication",
            "identifier": [
                {"system": NOTICE_IDENTIFIER, "value": f"{trigger.resource['id']}|{member}"}
            ],
            "status": "completed",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/communication-category",
                            "code": "notification",
                        }
                    ]
                }
            ],
            "priority": "urgent",
            "subject": {"reference": trigger.patient},
            "about": [{"reference": trigger.reference}],
            "encounter": {"reference": trigger.reference},
            "sent": fhir_datetime(datetime.now(PARIS)),
            "recipient": [{"reference": member}],
            "payload": [{"contentString": text}],
        }
        if sender:
            notice["sender"] = {"reference": sender}
        handling.create_once(notice)


def hold_pathways(handling: Handling, rule: Rule, trigger: Trigger) -> None:
    """Put the patient's pathways on hold for the stay: open tasks on-hold (businessStatus
    rehospitalised), CarePlans on-hold with the stay's rehospitalisation Flag in
    `supportingInfo` (a CarePlan already held by another stay gets this one's Flag too)."""
    plans = [
        plan
        for plan in handling.search(
            "CarePlan",
            [
                ("patient", trigger.patient),
                ("status", "active,on-hold"),
                ("pathway", f"{PATHWAY_SYSTEM}|"),
            ],
        )
        if plan["status"] == "active" or _held_by(handling, plan)
    ]
    if not plans:
        return
    created = handling.create_once(
        {
            "resourceType": "Flag",
            "identifier": [{"system": FLAG_IDENTIFIER, "value": trigger.resource["id"]}],
            "status": "active",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/flag-category",
                            "code": "admin",
                        }
                    ]
                }
            ],
            "code": {
                "coding": [{"system": BUSINESS_STATUS_SYSTEM, "code": REHOSPITALISED}],
                "text": "Réhospitalisé : parcours suspendus jusqu'à la sortie",
            },
            "subject": {"reference": trigger.patient},
            "period": {"start": trigger.written},
            "encounter": {"reference": trigger.reference},
        }
    )
    flag = loads(created.body)
    if flag["status"] != "active":  # the stay reopened: its discharge was cancelled (A13)
        flag["status"] = "active"
        flag["period"] = {"start": flag["period"]["start"]}
        handling.update(flag)
    flag_ref = f"Flag/{flag['id']}"
    for plan in plans:
        if any(info.get("reference") == flag_ref for info in plan.get("supportingInfo", [])):
            continue
        if plan["status"] == "active":
            for task in _tasks(handling, plan, tuple(sorted(HOLDABLE))):
                held = copy.deepcopy(task)
                held["status"] = "on-hold"
                held["businessStatus"] = business_status(REHOSPITALISED)
                handling.update(held)
            plan["status"] = "on-hold"
        plan.setdefault("supportingInfo", []).append({"reference": flag_ref})
        handling.update(plan)


def resume_pathways(handling: Handling, rule: Rule, trigger: Trigger) -> None:
    """The stay ends: close its Flag; CarePlans it held (and no other stay still holds) resume,
    their held tasks back to the status they had, due again `dueWithin` after the discharge."""
    flags = handling.search(
        "Flag", [("identifier", f"{FLAG_IDENTIFIER}|{escape(trigger.resource['id'])}")]
    )
    if not flags:
        return
    flag = flags[0]
    if flag["status"] == "active":
        flag["status"] = "inactive"
        flag.setdefault("period", {})["end"] = trigger.written
        handling.update(flag)
    flag_ref = f"Flag/{flag['id']}"
    plans = handling.search("CarePlan", [("patient", trigger.patient), ("status", "on-hold")])
    for plan in plans:
        infos = plan.get("supportingInfo", [])
        if not any(info.get("reference") == flag_ref for info in infos):
            continue
        plan["supportingInfo"] = [i for i in infos if i.get("reference") != flag_ref]
        if not plan["supportingInfo"]:
            del plan["supportingInfo"]
        if not _held_by(handling, plan):
            for task in _tasks(handling, plan, ("on-hold",)):
                if has_coding(
                    [task.get("businessStatus", {})], BUSINESS_STATUS_SYSTEM, REHOSPITALISED
                ):
                    handling.update(_resumed(handling, task, trigger.at))
            plan["status"] = "active"
        handling.update(plan)


def alert_coordinator(handling: Handling, rule: Rule, trigger: Trigger) -> None:
    """A Task for the coordinator when the trigger time is off hours (see `OffHours`)."""
    if rule.options.get("offHours") and trigger.at not in handling.rules.off_hours:
        return
    pathway, code = rule.options["pathway"], rule.options["code"]
    patient_id = trigger.patient.partition("/")[2]
    plan_value = f"{pathway}|{patient_id}|{trigger.resource['id']}"
    plans = handling.search(
        "CarePlan", [("identifier", f"{CAREPLAN_IDENTIFIER}|{escape(plan_value)}")]
    )
    careplan = f"CarePlan/{plans[0]['id']}" if plans else None
    author = (plans[0].get("author") or {}).get("reference") if plans else None
    handling.create_once(
        coordinator_task(
            identifier=f"{plan_value}|{code}",
            pathway=pathway,
            code=code,
            description=_message(rule, trigger.at),
            patient=trigger.patient,
            owner=coordinator_of(
                handling.engine, handling.uow, handling.context, careplan, trigger.patient
            ),
            careplan=careplan,
            encounter=trigger.reference,
            requester=author,
            authored=datetime.now(PARIS),
        )
    )


def _message(rule: Rule, moment: datetime) -> str:
    """The rule's message, with the local date and time of `moment`."""
    local = moment.astimezone(PARIS)
    return rule.options["message"].format(
        date=local.strftime("%d/%m/%Y"), time=local.strftime("%H:%M")
    )


ACTIONS: dict[str, Callable[[Handling, Rule, Trigger], None]] = {
    "apply-pathway": apply_pathway,
    "notify-care-team": notify_care_team,
    "hold-pathways": hold_pathways,
    "resume-pathways": resume_pathways,
    "alert-coordinator": alert_coordinator,
}


# -- rehospitalisation, the details -------------------------------------------------------------


def _held_by(handling: Handling, plan: dict[str, Any]) -> bool:
    """Whether an on-hold CarePlan is held by a stay that is still going on (an active
    rehospitalisation Flag in its supportingInfo)."""
    for info in plan.get("supportingInfo", []):
        reference = info.get("reference", "")
        if reference.startswith("Flag/"):
            flag = handling.read(reference)
            if (
                flag is not None
                and flag.get("status") == "active"
                and any(i.get("system") == FLAG_IDENTIFIER for i in flag.get("identifier", []))
            ):
                return True
    return False


def _tasks(handling: Handling, plan: dict[str, Any], statuses: tuple[str, ...]) -> list[dict]:
    return handling.search(
        "Task", [("based-on", f"CarePlan/{plan['id']}"), ("status", ",".join(statuses))]
    )


def _resumed(handling: Handling, task: dict[str, Any], discharge: datetime) -> dict[str, Any]:
    """A held task back to the status it had before the hold, due `dueWithin` after the
    discharge (the deadline as the definition gave it, copied on the task)."""
    resumed = copy.deepcopy(task)
    resumed["status"] = _status_before_hold(handling, task)
    resumed.pop("businessStatus", None)
    for within in step(task).get("dueWithin", [])[:1]:
        period = resumed.setdefault("restriction", {}).setdefault("period", {})
        period["start"] = fhir_datetime(discharge)
        period["end"] = fhir_datetime(due_date(discharge, within))
    return resumed


def _status_before_hold(handling: Handling, task: dict[str, Any]) -> str:
    """The last status of a held task before it went on hold (the lifecycle hook checks the
    resume against the same history)."""
    version = int(task["meta"]["versionId"])
    held = Change(
        "update",
        "Task",
        task["id"],
        version + 1,
        datetime.now(PARIS),
        None,
        version,
        handling.uow.repository,
    )
    return status_before_hold(handling.uow, held) or "requested"


def install(server: Server) -> None:
    server.add_outbox_consumer(PathwayTriggers(server.engine, load_rules()))
