"""`Measure/[id]/$evaluate-measure`: the indicators a CPTS reports each year (patients included,
steps done on time, median delay of each step, 6-month readmissions), computed from the pathway
CarePlans, Tasks and Encounters and returned as a summary MeasureReport.

The Measures are data (`pathways/definitions/<pathway>-indicators.json`): each group's code
names its indicator (`/CodeSystem/pathway-indicator`) and, for a step, the step
(`/CodeSystem/pathway-step`), so which steps are reported is changed by editing a Measure, not
this module; the deadlines are those each Task was planned with. Everything is read with search
interactions run by the engine inside the operation's read-only unit of work, so authorisation
applies as for any search. The rules are written down in docs/pathways.md (Indicators).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from fhir_server.engine.interaction import Context, Interaction, Kind, Outcome, Params
from fhir_server.engine.paging import PAGE_PARAM
from fhir_server.engine.unit_of_work import UnitOfWork
from fhir_server.errors import FhirError, bad_request
from fhir_server.formats.json_format import dumps, loads
from fhir_server.operations import Operation
from fhir_server.search.normalize import date_range
from fhir_server.server import Server
from pathways.canonical import BASE, PATHWAY_SYSTEM, STEP_SYSTEM
from pathways.timing import fhir_datetime

if TYPE_CHECKING:
    from fhir_server.engine.engine import Engine

DEFINITION = f"{BASE}/OperationDefinition/Measure-evaluate-measure"
INDICATOR_SYSTEM = f"{BASE}/CodeSystem/pathway-indicator"
POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
UCUM = "http://unitsofmeasure.org"

READMISSION_WINDOW = timedelta(days=183)
INPATIENT_CLASSES = ("IMP", "ACUTE", "NONAC")
NOT_HELD_ENCOUNTERS = frozenset({"planned", "cancelled", "entered-in-error"})
NOT_ENROLMENTS = frozenset({"draft", "entered-in-error"})
UNDECIDED_TASKS = frozenset({"draft", "on-hold"})  # their due dates are not final
PARAMETERS = ("periodStart", "periodEnd", "reportType", "organization")
SUMMARY_REPORT_TYPES = (None, "population", "summary")
_ORGANIZATION = re.compile(r"Organization/[A-Za-z0-9\-.]{1,64}")
_SECONDS_PER_DAY = Decimal(86400)


@dataclass(frozen=True)
class Request:
    """What to evaluate: the period [start, end) as given and as UTC instants, the CPTS."""

    period_start: str
    period_end: str
    start: datetime
    end: datetime
    organization: str  # Organization/[id]


# -- parameters --------------------------------------------------------------------------------


def _inputs(ix: Interaction) -> dict[str, str]:
    """The operation's parameters, from the URL (GET) or a Parameters body (POST); each at
    most once, none the operation does not support."""
    pairs: list[tuple[str, Any]] = list(ix.params)
    if ix.resource is not None:
        if ix.resource.get("resourceType") != "Parameters":
            raise bad_request("$evaluate-measure takes a Parameters resource")
        for parameter in ix.resource.get("parameter", []):
            values = [v for k, v in parameter.items() if k.startswith("value")]
            value = values[0] if values else None
            if isinstance(value, dict):  # valueReference
                value = value.get("reference")
            pairs.append((parameter.get("name"), value))
    inputs: dict[str, str] = {}
    for name, value in pairs:
        if name not in PARAMETERS:
            raise bad_request(
                f"$evaluate-measure does not support the parameter {name!r} "
                f"(supported: {', '.join(PARAMETERS)})"
            )
        if name in inputs:
            raise bad_request(f"The parameter {name} is given more than once")
        if not isinstance(value, str) or not value:
            raise bad_request(f"The parameter {name} has no value")
        inputs[name] = value
    return inputs


def _bound(inputs: dict[str, str], name: str, zone: tzinfo) -> tuple[datetime, datetime]:
    if name not in inputs:
        raise bad_request(f"$evaluate-measure needs {name} (a date)", name)
    try:
        return date_range(inputs[name], zone)
    except ValueError:
        raise bad_request(f"{name} is not a FHIR date: {inputs[name]!r}", name) from None


def parse_request(ix: Interaction, zone: tzinfo) -> Request:
    """The period (periodStart from the beginning of the period its value stands for, periodEnd
    to the end of its own: `2025` to `2025` is the whole year) and the CPTS; a summary report."""
    inputs = _inputs(ix)
    start, _ = _bound(inputs, "periodStart", zone)
    _, end = _bound(inputs, "periodEnd", zone)
    if end <= start:
        raise bad_request("periodEnd is before periodStart", "periodEnd")
    report_type = inputs.get("reportType")
    if report_type not in SUMMARY_REPORT_TYPES:
        raise bad_request(
            f"reportType {report_type!r} is not supported: this server only makes population "
            "(summary) reports",
            "reportType",
        )
    organization = inputs.get("organization")
    if organization is None or not _ORGANIZATION.fullmatch(organization):
        raise bad_request(
            "$evaluate-measure needs organization, the CPTS the indicators are reported for "
            "(Organization/[id])",
            "organization",
        )
    return Request(inputs["periodStart"], inputs["periodEnd"], start, end, organization)


# -- reading through the engine ----------------------------------------------------------------


class Reader:
    """Search interactions run by the engine in one unit of work, every page of each."""

    def __init__(self, engine: Engine, uow: UnitOfWork, context: Context) -> None:
        self.engine, self.uow, self.context = engine, uow, context
        # Each match brings at most one resource with the includes used here, so a page never
        # reaches the include cap.
        self.count = min(engine.settings.max_page_size, engine.settings.max_include)

    def read(self, type_: str, id_: str) -> dict[str, Any]:
        outcome = self.engine.run(self.uow, Interaction(Kind.READ, type_, id_), self.context)
        return loads(outcome.body)

    def search(
        self, type_: str, params: Params
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """The matches of a search, and the resources its includes brought, by `Type/id`."""
        matches: list[dict[str, Any]] = []
        included: dict[str, dict[str, Any]] = {}
        page: Params = []
        while True:
            ix = Interaction(
                Kind.SEARCH_TYPE,
                type_,
                params=[*params, ("_count", str(self.count)), *page],
                strict=True,
            )
            bundle = loads(dumps(self.engine.run(self.uow, ix, self.context).resource))
            for entry in bundle.get("entry", []):
                resource, mode = entry["resource"], entry["search"]["mode"]
                if mode == "match":
                    matches.append(resource)
                elif mode == "include":
                    included[f"{resource['resourceType']}/{resource['id']}"] = resource
                else:  # the search reported a problem (included resources capped)
                    raise FhirError.of(
                        500, "too-costly", f"A {type_} search of the indicators was incomplete"
                    )
            following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
            if not following:
                return matches, included
            token = dict(parse_qsl(urlsplit(following[0]).query))[PAGE_PARAM]
            page = [(PAGE_PARAM, token)]


# -- the rules ---------------------------------------------------------------------------------


def _low(value: str, zone: tzinfo) -> datetime:
    return date_range(value, zone)[0]


def _high(value: str, zone: tzinfo) -> datetime:
    return date_range(value, zone)[1]


def _in_period(value: str | None, request: Request, zone: tzinfo) -> bool:
    return value is not None and request.start <= _low(value, zone) < request.end


def _due(task: dict[str, Any]) -> str | None:
    return task.get("restriction", {}).get("period", {}).get("end")


def _done(task: dict[str, Any]) -> str | None:
    return task.get("executionPeriod", {}).get("end")


def decided(task: dict[str, Any], now: datetime, zone: tzinfo) -> bool:
    """Whether a task's on-time outcome is settled: completed or cancelled, or past due in a
    status whose due date is final (not draft, not on-hold)."""
    status = task["status"]
    if status in ("completed", "cancelled"):
        return True
    return status not in UNDECIDED_TASKS and _high(_due(task), zone) <= now


def on_time(task: dict[str, Any], zone: tzinfo) -> bool:
    """Completed no later than its due date (at the precision the due date is written with)."""
    done = _done(task)
    return (
        task["status"] == "completed"
        and done is not None
        and _low(done, zone) < _high(_due(task), zone)
    )


def delay_days(task: dict[str, Any], careplan: dict[str, Any], zone: tzinfo) -> Decimal:
    """Days from the CarePlan's trigger (period.start) to the task's completion."""
    seconds = (_low(_done(task), zone) - _low(careplan["period"]["start"], zone)).total_seconds()
    return Decimal(int(seconds)) / _SECONDS_PER_DAY


def readmitted(stay: dict[str, Any], encounters: Iterable[dict[str, Any]], zone: tzinfo) -> bool:
    """Whether one of the patient's `encounters` is an inpatient stay starting after the end of
    `stay` and at most 183 days after it."""
    ended = _low(stay["period"]["end"], zone)
    for encounter in encounters:
        start = encounter.get("period", {}).get("start")
        if (
            encounter["id"] != stay["id"]
            and encounter.get("status") not in NOT_HELD_ENCOUNTERS
            and encounter.get("class", {}).get("system") == ACT_CODE
            and encounter["class"].get("code") in INPATIENT_CLASSES
            and start is not None
            and ended < _low(start, zone) <= ended + READMISSION_WINDOW
        ):
            return True
    return False


def _rounded(value: Decimal, places: str) -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_UP)


def proportion(numerator: int, denominator: int) -> Decimal | None:
    """numerator / denominator to 4 decimal places, None when nobody is in the denominator."""
    if denominator <= 0:
        return None
    return _rounded(Decimal(numerator) / Decimal(denominator), "0.0001")


def median_days(observations: list[Decimal]) -> Decimal | None:
    """The median of the observations (the mean of the two middle ones for an even count), to
    2 decimal places, None without observations."""
    if not observations:
        return None
    return _rounded(statistics.median(observations), "0.01")


# -- evaluation --------------------------------------------------------------------------------


def _codes(concept: dict[str, Any] | None, system: str) -> list[str]:
    return [c["code"] for c in (concept or {}).get("coding", []) if c.get("system") == system]


def _unprocessable(measure: dict[str, Any], text: str) -> FhirError:
    return FhirError.of(422, "processing", f"Measure/{measure['id']}: {text}")


def _pathway(measure: dict[str, Any]) -> str:
    """The pathway of a Measure: its useContext `program`, a coding of the pathway system."""
    for context in measure.get("useContext", []):
        codes = _codes(context.get("valueCodeableConcept"), PATHWAY_SYSTEM)
        if context.get("code", {}).get("code") == "program" and codes:
            return codes[0]
    raise _unprocessable(measure, "no useContext program names its pathway")


class Evaluation:
    """One evaluation of one Measure: what each of its groups counts, read when it is asked."""

    def __init__(
        self, reader: Reader, measure: dict[str, Any], request: Request, now: datetime
    ) -> None:
        self.reader, self.measure, self.request, self.now = reader, measure, request, now
        self.zone = reader.engine.search.local_zone
        self.pathway = _pathway(measure)

    def _period(self, code: str) -> Params:
        """Search criteria on a date parameter: a superset of the values in the period, which
        `_in_period` then decides exactly."""
        return [
            (code, f"ge{self.request.start.isoformat()}"),
            (code, f"lt{self.request.end.isoformat()}"),
        ]

    def enrolments(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """The CPTS's CarePlans of the pathway started in the period, and the stays that
        triggered them (by `Encounter/id`)."""
        careplans, included = self.reader.search(
            "CarePlan",
            [
                ("pathway", f"{PATHWAY_SYSTEM}|{self.pathway}"),
                *self._period("date"),
                ("_include", "CarePlan:encounter"),
            ],
        )
        kept = [
            careplan
            for careplan in careplans
            if careplan.get("status") not in NOT_ENROLMENTS
            and self._authored(careplan)
            and _in_period(careplan.get("period", {}).get("start"), self.request, self.zone)
        ]
        return kept, included

    def _authored(self, careplan: dict[str, Any]) -> bool:
        return careplan.get("author", {}).get("reference") == self.request.organization

    def tasks(self, step: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """The CPTS's Tasks of a step due in the period (not entered-in-error), each with its
        CarePlan."""
        tasks, included = self.reader.search(
            "Task",
            [
                ("code", f"{STEP_SYSTEM}|{step}"),
                *self._period("due-date"),
                ("_include", "Task:based-on"),
            ],
        )
        found = []
        for task in tasks:
            plans = [included.get(ref.get("reference", "")) for ref in task.get("basedOn", [])]
            careplan = next((p for p in plans if p and p["resourceType"] == "CarePlan"), None)
            if (
                careplan is not None
                and self._authored(careplan)
                and task["status"] != "entered-in-error"
                and _in_period(_due(task), self.request, self.zone)
            ):
                found.append((task, careplan))
        return found

    def stays_after(self, patients: list[str], since: datetime) -> dict[str, list[dict[str, Any]]]:
        """The inpatient Encounters of these patients going on at or after `since`, by patient
        reference; as many patients per search as a page holds."""
        by_patient: dict[str, list[dict[str, Any]]] = {p: [] for p in patients}
        classes = ",".join(f"{ACT_CODE}|{code}" for code in INPATIENT_CLASSES)
        size = self.reader.count
        for first in range(0, len(patients), size):
            chunk = patients[first : first + size]
            encounters, _ = self.reader.search(
                "Encounter",
                [
                    ("subject", ",".join(chunk)),
                    ("class", classes),
                    ("date", f"ge{since.isoformat()}"),
                ],
            )
            for encounter in encounters:
                subject = encounter.get("subject", {}).get("reference")
                if subject in by_patient:
                    by_patient[subject].append(encounter)
        return by_patient

    # -- indicators ----------------------------------------------------------------------------

    def inclusions(self, _group: dict[str, Any]) -> tuple[dict[str, int], dict[str, Any] | None]:
        careplans, _ = self.enrolments()
        patients = {careplan["subject"]["reference"] for careplan in careplans}
        return {"initial-population": len(patients)}, None

    def readmissions(self, _group: dict[str, Any]) -> tuple[dict[str, int], dict[str, Any] | None]:
        careplans, included = self.enrolments()
        stays = [
            (careplan, included.get(careplan.get("encounter", {}).get("reference", "")))
            for careplan in careplans
        ]
        indexed = [
            (careplan, stay)
            for careplan, stay in stays
            if stay is not None and stay.get("period", {}).get("end")
        ]
        numerator = 0
        if indexed:
            since = min(_low(stay["period"]["end"], self.zone) for _, stay in indexed)
            patients = sorted({careplan["subject"]["reference"] for careplan, _ in indexed})
            later = self.stays_after(patients, since)
            numerator = sum(
                readmitted(stay, later[careplan["subject"]["reference"]], self.zone)
                for careplan, stay in indexed
            )
        counts = {
            "initial-population": len(careplans),
            "denominator": len(indexed),
            "numerator": numerator,
        }
        return counts, _score(proportion(numerator, len(indexed)))

    def on_time(self, group: dict[str, Any]) -> tuple[dict[str, int], dict[str, Any] | None]:
        tasks = [task for task, _ in self.tasks(self._step(group))]
        denominator = [task for task in tasks if decided(task, self.now, self.zone)]
        excluded = [task for task in denominator if task["status"] == "cancelled"]
        numerator = [task for task in denominator if on_time(task, self.zone)]
        counts = {
            "initial-population": len(tasks),
            "denominator": len(denominator),
            "denominator-exclusion": len(excluded),
            "numerator": len(numerator),
        }
        return counts, _score(proportion(len(numerator), len(denominator) - len(excluded)))

    def delay(self, group: dict[str, Any]) -> tuple[dict[str, int], dict[str, Any] | None]:
        pairs = self.tasks(self._step(group))
        done = [(t, c) for t, c in pairs if t["status"] == "completed" and _done(t)]
        observations = [delay_days(task, careplan, self.zone) for task, careplan in done]
        counts = {
            "initial-population": len(pairs),
            "measure-population": len(done),
            "measure-observation": len(observations),
        }
        median = median_days(observations)
        score = None
        if median is not None:
            score = {"value": median, "unit": "d", "system": UCUM, "code": "d"}
        return counts, score

    def _step(self, group: dict[str, Any]) -> str:
        steps = _codes(group.get("code"), STEP_SYSTEM)
        if not steps:
            raise _unprocessable(self.measure, f"group {group.get('id')} names no step")
        return steps[0]

    def report_group(self, group: dict[str, Any]) -> dict[str, Any]:
        kinds = _codes(group.get("code"), INDICATOR_SYSTEM)
        indicator = INDICATORS.get(kinds[0]) if kinds else None
        if indicator is None:
            raise _unprocessable(
                self.measure,
                f"group {group.get('id')} names no indicator of {INDICATOR_SYSTEM} "
                f"({', '.join(INDICATORS)})",
            )
        counts, score = indicator(self, group)
        populations = []
        for population in group.get("population", []):
            codes = _codes(population.get("code"), POPULATION_SYSTEM)
            if not codes or codes[0] not in counts:
                raise _unprocessable(
                    self.measure,
                    f"group {group.get('id')}: population {population.get('id')} is not one "
                    f"the {kinds[0]} indicator counts ({', '.join(counts)})",
                )
            populations.append(
                {
                    **({"id": population["id"]} if "id" in population else {}),
                    "code": population["code"],
                    "count": counts[codes[0]],
                }
            )
        reported: dict[str, Any] = {}
        if "id" in group:
            reported["id"] = group["id"]
        reported["code"] = group["code"]
        reported["population"] = populations
        if score is not None:
            reported["measureScore"] = score
        return reported


def _score(value: Decimal | None) -> dict[str, Any] | None:
    return None if value is None else {"value": value}


INDICATORS = {
    "inclusions": Evaluation.inclusions,
    "on-time": Evaluation.on_time,
    "delay": Evaluation.delay,
    "readmission-6-months": Evaluation.readmissions,
}


def measure_report(
    measure: dict[str, Any], request: Request, now: datetime, groups: Iterator[dict[str, Any]]
) -> dict[str, Any]:
    canonical = measure.get("url", f"Measure/{measure['id']}")
    if measure.get("version"):
        canonical = f"{canonical}|{measure['version']}"
    report: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": "summary",
        "measure": canonical,
        "date": fhir_datetime(now),
        "reporter": {"reference": request.organization},
        "period": {"start": request.period_start, "end": request.period_end},
    }
    if "improvementNotation" in measure:
        report["improvementNotation"] = measure["improvementNotation"]
    report["group"] = list(groups)
    return report


def run(engine: Engine, uow: UnitOfWork, ix: Interaction, ctx: Context) -> Outcome:
    request = parse_request(ix, engine.search.local_zone)
    reader = Reader(engine, uow, ctx)
    measure = reader.read("Measure", ix.id)
    try:
        reader.read("Organization", request.organization.split("/")[1])
    except FhirError as exc:
        if exc.status not in (404, 410):
            raise
        raise bad_request(
            f"organization {request.organization} is not known", "organization"
        ) from None
    now = datetime.now(UTC)
    evaluation = Evaluation(reader, measure, request, now)
    groups = (evaluation.report_group(group) for group in measure.get("group", []))
    return Outcome(200, resource=measure_report(measure, request, now, groups))


EVALUATE_MEASURE = Operation(
    name="evaluate-measure",
    definition=DEFINITION,
    run=run,
    instance=True,
    resource_types=frozenset({"Measure"}),
    affects_state=False,
)


def install(server: Server) -> None:
    server.engine.register_operation(EVALUATE_MEASURE)
