"""The pathway definitions: the Bundles shipped in `pathways/definitions/`, stored on the server
at start-up, and a PlanDefinition read as the steps `$apply` plans (docs/pathways.md).

Shipped resources are stored only when absent, so that the edits a CPTS makes (a deadline, a
condition) survive restarts. A shipped resource replaces the stored one only when its
`version` is newer, comparing the numbers of the versions one by one (`1.10.0` > `1.9.2`,
`1.0.1-cpts` > `1.0.0`, `1.0.0-cpts` = `1.0.0`): a CPTS that edits a definition keeps its edits
until the project ships a higher version. A resource a CPTS deleted stays deleted.

Every write of a pathway PlanDefinition (url `https://cpts-fhir.org/fhir/PlanDefinition/<id>`)
is checked here, whatever door it comes through: a definition `$apply` could not plan is
refused with 422, so a broken edit is found when it is made, not when a patient needs it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.models import models

from fhir_server.engine.hooks import HookPoint
from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.engine.unit_of_work import Change, UnitOfWork
from fhir_server.errors import FhirError, Issue
from fhir_server.formats.json_format import loads
from fhir_server.patch.fhirpath_patch import strict_expression as strict_fhirpath
from fhir_server.server import Server
from pathways.canonical import (
    FUNDING_EXTENSION,
    FUNDING_SYSTEM,
    PLAN_PREFIX,
    ROLE_SYSTEM,
    STEP_SYSTEM,
)
from pathways.timing import PARIS, DurationError, due_date
from profiles import PROFILES_DIR

DEFINITIONS_DIR = Path(__file__).with_name("definitions")
UCUM = "http://unitsofmeasure.org"
SOURCE = "pathway"
# What a step condition may read besides FHIRPath's own %resource, %context, %ucum...
CONDITION_VARIABLES = frozenset({"subject", "encounter", "conditions", "observations", "trigger"})
_FHIRPATH_VARIABLES = frozenset({"resource", "rootResource", "context", "ucum", "sct", "loinc"})
_VARIABLE = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)")
_STEP_ID = re.compile(r"[A-Za-z0-9\-]{1,64}")
_REPEAT_KEYS = frozenset({"count", "period", "periodUnit", "frequency"})
_PRIORITIES = ("routine", "urgent", "asap", "stat")


def _codes(code_system: str) -> frozenset[str]:
    """The codes of a CodeSystem shipped in profiles/."""
    path = PROFILES_DIR / "code-systems" / f"{code_system}.json"
    return frozenset(c["code"] for c in json.loads(path.read_text(encoding="utf-8"))["concept"])


_CARE_ROLES = _codes("care-role")
_FUNDING_SOURCES = _codes("funding-source")


# -- loading --------------------------------------------------------------------------------------


def shipped_resources() -> list[dict[str, Any]]:
    """Every resource of every Bundle in `pathways/definitions/` (definitions and indicators),
    in file then entry order."""
    resources = []
    for path in sorted(DEFINITIONS_DIR.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            if not resource.get("id"):
                raise ValueError(f"{path.name}: every shipped resource needs an id")
            resources.append(resource)
    return resources


def load_definitions(server: Server) -> int:
    """Store the shipped resources that are absent, or older than shipped, in one transaction;
    returns how many were written."""
    resources = shipped_resources()
    context = Context(source=SOURCE)

    def work(uow: UnitOfWork) -> int:
        written = 0
        for resource in resources:
            type_, id_ = resource["resourceType"], resource["id"]
            stored = uow.repository.read(type_, id_)
            if stored is not None and (
                stored.body is None
                or _version(resource.get("version")) <= _version(loads(stored.body).get("version"))
            ):
                continue
            server.engine.run(uow, Interaction(Kind.UPDATE, type_, id_, resource=resource), context)
            written += 1
        return written

    return server.engine.in_transaction(True, context, work)


def _version(text: str | None) -> tuple[int, ...]:
    return tuple(int(number) for number in re.findall(r"\d+", text or ""))


def install(server: Server) -> None:
    server.hooks.register(HookPoint.BEFORE_STORAGE, check_definition)
    load_definitions(server)


def check_definition(_context: Context, change: Change, _uow: UnitOfWork) -> None:
    """BEFORE_STORAGE hook: a pathway PlanDefinition must be one `$apply` can plan."""
    resource = change.resource
    if (
        change.type == "PlanDefinition"
        and resource is not None
        and resource.get("url", "").startswith(PLAN_PREFIX)
    ):
        read_steps(resource)


# -- reading a PlanDefinition ---------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A PlanDefinition action, as `$apply` plans it."""

    id: str
    code: dict[str, Any]  # Coding of /CodeSystem/pathway-step
    title: str
    definition: str  # the ActivityDefinition
    role: dict[str, Any]  # Coding of /CodeSystem/care-role
    within: dict[str, Any] | None  # Duration of a single step
    count: int  # occurrences: 1, or the count of a series
    period: dict[str, Any] | None  # Duration between the occurrences of a series
    after: tuple[str, ...]  # the steps that must end first
    offset: dict[str, Any] | None  # Duration after the last of them
    conditions: tuple[str, ...]  # FHIRPath, all must hold
    required: bool
    priority: str
    funding: dict[str, Any] | None  # default funding source (Coding)

    def due_within(self, occurrence: int) -> dict[str, Any]:
        """The deadline of an occurrence relative to the anchor: occurrence k of a series is
        due k periods after it."""
        if self.period is None:
            return self.within or {}
        return {
            "value": occurrence * self.period["value"],
            "system": UCUM,
            "code": self.period["code"],
        }


def read_steps(plan: dict[str, Any]) -> list[Step]:
    """The steps of a pathway PlanDefinition, every one after the steps it depends on; a
    definition that cannot be planned is a 422 listing every problem."""
    issues: list[Issue] = []
    pathway = plan.get("id", "")
    if plan.get("url") != PLAN_PREFIX + pathway:
        issues.append(
            _issue(f"The url of PlanDefinition {pathway} must be {PLAN_PREFIX}{pathway}", "url")
        )
    steps = []
    for index, action in enumerate(plan.get("action", [])):
        step = _step(pathway, action, f"PlanDefinition.action[{index}]", issues)
        if step is not None:
            steps.append(step)
    if not steps and not issues:
        issues.append(_issue("A pathway has at least one step (action)", "action"))
    ordered = _dependencies_first(steps, issues)
    if issues:
        raise FhirError(422, list(dict.fromkeys(issues)))
    return ordered


def _issue(text: str, where: str) -> Issue:
    expression = where if where.startswith("PlanDefinition") else f"PlanDefinition.{where}"
    return Issue("business-rule", text, "error", expression)


def _step(pathway: str, action: dict[str, Any], where: str, issues: list[Issue]) -> Step | None:
    before = len(issues)
    id_ = action.get("id", "")
    if not _STEP_ID.fullmatch(id_):
        issues.append(
            _issue("A step needs an id of letters, digits and '-' (the step code)", where)
        )
        return None
    if action.get("action"):
        issues.append(_issue(f"Step {id_}: steps are not nested (action.action)", where))
    code = next((c for cc in action.get("code", []) for c in cc.get("coding", [])), {})
    if code.get("system") != STEP_SYSTEM or code.get("code") != f"{pathway}.{id_}":
        issues.append(
            _issue(f"Step {id_}: code must be {STEP_SYSTEM}|{pathway}.{id_}", f"{where}.code")
        )
    role = _role(action, id_, where, issues)
    within, count, period = _timing(action, id_, where, issues)
    after, offset = _related(action, id_, where, issues)
    conditions = _conditions(action, id_, where, issues)
    definition = action.get("definitionCanonical")
    if not definition:
        issues.append(
            _issue(f"Step {id_}: definitionCanonical names its ActivityDefinition", where)
        )
    priority = action.get("priority", "routine")
    if priority not in _PRIORITIES:
        issues.append(_issue(f"Step {id_}: unknown priority {priority!r}", f"{where}.priority"))
    funding = _funding(action, id_, where, issues)
    if len(issues) > before:
        return None
    return Step(
        id=id_,
        code=code,
        title=action.get("title") or id_,
        definition=definition,
        role=role,
        within=within,
        count=count,
        period=period,
        after=after,
        offset=offset,
        conditions=conditions,
        required=action.get("requiredBehavior", "must") != "could",
        priority=priority,
        funding=funding,
    )


def _funding(
    action: dict[str, Any], id_: str, where: str, issues: list[Issue]
) -> dict[str, Any] | None:
    """The default funding source of the step's Task: one code of /CodeSystem/funding-source."""
    sources = [e for e in action.get("extension", []) if e.get("url") == FUNDING_EXTENSION]
    if not sources:
        return None
    coding = sources[0].get("valueCoding") or {}
    if (
        len(sources) > 1
        or coding.get("system") != FUNDING_SYSTEM
        or coding.get("code") not in _FUNDING_SOURCES
    ):
        issues.append(
            _issue(
                f"Step {id_}: one funding source, a code of {FUNDING_SYSTEM}", f"{where}.extension"
            )
        )
    return coding


def _role(action: dict[str, Any], id_: str, where: str, issues: list[Issue]) -> dict[str, Any]:
    roles = [
        coding
        for participant in action.get("participant", [])
        for coding in (participant.get("role") or {}).get("coding", [])
        if coding.get("system") == ROLE_SYSTEM
    ]
    if len(action.get("participant", [])) != 1 or len(roles) != 1:
        issues.append(
            _issue(f"Step {id_}: one participant whose role is coded in {ROLE_SYSTEM}", where)
        )
        return {}
    if roles[0].get("code") not in _CARE_ROLES:
        issues.append(
            _issue(f"Step {id_}: unknown role {roles[0].get('code')!r}", f"{where}.participant[0]")
        )
    return roles[0]


def _timing(
    action: dict[str, Any], id_: str, where: str, issues: list[Issue]
) -> tuple[dict[str, Any] | None, int, dict[str, Any] | None]:
    """(deadline of a single step, occurrences, period of a series)."""
    within, timing = action.get("timingDuration"), action.get("timingTiming")
    if (within is None) == (timing is None):
        issues.append(_issue(f"Step {id_}: a deadline, timingDuration or timingTiming", where))
        return None, 1, None
    if within is not None:
        _check_duration(within, f"Step {id_}: timingDuration", f"{where}.timingDuration", issues)
        return within, 1, None
    repeat = timing.get("repeat") or {}
    count, period = (
        repeat.get("count"),
        {"value": repeat.get("period"), "code": repeat.get("periodUnit")},
    )
    if (
        set(timing) != {"repeat"}
        or not set(repeat) <= _REPEAT_KEYS
        or repeat.get("frequency", 1) != 1
        or not isinstance(count, int)
        or count < 1
    ):
        issues.append(
            _issue(
                f"Step {id_}: a series is timingTiming.repeat with count, period and periodUnit "
                "only (one occurrence per period)",
                f"{where}.timingTiming",
            )
        )
        return None, 1, None
    _check_duration(
        period, f"Step {id_}: the period of the series", f"{where}.timingTiming", issues
    )
    if period["value"] == 0:
        issues.append(
            _issue(f"Step {id_}: the period of a series is positive", f"{where}.timingTiming")
        )
    return None, count, period


def _check_duration(duration: dict[str, Any], what: str, where: str, issues: list[Issue]) -> None:
    try:
        if duration.get("value") is not None and duration["value"] < 0:
            raise DurationError("a deadline cannot be negative")
        due_date(datetime.now(PARIS), duration)
    except DurationError as exc:
        issues.append(_issue(f"{what}: {exc}", where))


def _related(
    action: dict[str, Any], id_: str, where: str, issues: list[Issue]
) -> tuple[tuple[str, ...], dict[str, Any] | None]:
    after: list[str] = []
    offsets = []
    for index, related in enumerate(action.get("relatedAction", [])):
        here = f"{where}.relatedAction[{index}]"
        if related.get("relationship") != "after-end" or "offsetRange" in related:
            issues.append(
                _issue(
                    f"Step {id_}: a dependency is relationship after-end, with an optional "
                    "offsetDuration",
                    here,
                )
            )
            continue
        after.append(related.get("actionId", ""))
        if "offsetDuration" in related:
            offsets.append(related["offsetDuration"])
            _check_duration(related["offsetDuration"], f"Step {id_}: offset", here, issues)
    if any(offset != offsets[0] for offset in offsets):
        issues.append(_issue(f"Step {id_}: its dependencies share one offset", where))
    return tuple(dict.fromkeys(after)), (offsets[0] if offsets else None)


def _conditions(
    action: dict[str, Any], id_: str, where: str, issues: list[Issue]
) -> tuple[str, ...]:
    conditions = []
    for index, condition in enumerate(action.get("condition", [])):
        here = f"{where}.condition[{index}]"
        expression = condition.get("expression") or {}
        text = expression.get("expression", "")
        if (
            condition.get("kind") != "applicability"
            or expression.get("language") != "text/fhirpath"
        ):
            issues.append(
                _issue(f"Step {id_}: conditions are applicability, in text/fhirpath", here)
            )
            continue
        unknown = set(_VARIABLE.findall(text)) - CONDITION_VARIABLES - _FHIRPATH_VARIABLES
        if unknown:
            issues.append(
                _issue(
                    f"Step {id_}: unknown variables {', '.join(sorted(unknown))} (a condition "
                    f"reads %{', %'.join(sorted(CONDITION_VARIABLES))})",
                    here,
                )
            )
            continue
        try:  # fhirpathpy's own parser skips what it cannot read: the strict grammar first
            expression = strict_fhirpath(text)
            fhirpath(expression)
        except Exception as exc:  # fhirpathpy raises bare Exceptions on syntax errors
            issues.append(_issue(f"Step {id_}: the condition is not FHIRPath: {exc}", here))
            continue
        conditions.append(expression)
    return tuple(conditions)


def _dependencies_first(steps: list[Step], issues: list[Issue]) -> list[Step]:
    """The steps ordered so that each comes after those it depends on (action order
    otherwise); an unknown or circular dependency is an issue."""
    by_id: dict[str, Step] = {}
    for step in steps:
        if step.id in by_id:
            issues.append(_issue(f"Two steps are called {step.id}", "action"))
        by_id[step.id] = step
    ordered: list[Step] = []
    state: dict[str, str] = {}

    def visit(step: Step) -> None:
        if state.get(step.id) == "done":
            return
        if state.get(step.id) == "visiting":
            issues.append(
                _issue(f"Step {step.id} depends on itself through its dependencies", "action")
            )
            return
        state[step.id] = "visiting"
        for other in step.after:
            if other not in by_id:
                issues.append(
                    _issue(f"Step {step.id} depends on an unknown step {other!r}", "action")
                )
            else:
                visit(by_id[other])
        state[step.id] = "done"
        ordered.append(step)

    for step in steps:
        visit(step)
    return ordered


@lru_cache(maxsize=512)
def fhirpath(expression: str) -> Any:
    """A step condition compiled once with the R4 model (choice elements such as `value`)."""
    return fhirpath_compile(expression, models["r4"])
