"""The pathway definitions on the server: the four PlanDefinitions with every step of the brief
(performer role, deadline, dependencies, conditions) listed and read over HTTP, the rule that
keeps a CPTS's edits across restarts, the refusal of a definition `$apply` could not plan, and
the OperationDefinition of `$apply` served and declared."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.conformance import load_conformance
from fhir_server.server import Server
from pathways import catalogue
from profiles import PROFILES_DIR
from tests.rest.resources import JSON

CPTS = "https://cpts-fhir.org/fhir"
DEFINITIONS = Path(catalogue.__file__).with_name("definitions")
NYHA = "88020-3"

# Every step of docs/DOMAIN "The four pathways", written by hand: step → (role, deadline,
# steps it waits for, whether a condition decides it, whether the CarePlan waits for it).
# A deadline is (value, unit) for one task, (count, period, unit) for a series.
STEPS: dict[str, dict[str, tuple[str, tuple, tuple[str, ...], bool, bool]]] = {
    "hospital-discharge": {
        "discharge-letter": ("hospital", (0, "d"), (), False, True),
        "medication-reconciliation": ("pharmacist", (48, "h"), (), False, True),
        "gp-visit": ("gp", (7, "d"), (), False, True),
        "follow-up-call": ("coordinator", (8, "d"), (), False, True),
        "complex-discharge-coordination": ("coordinator", (1, "d"), (), True, True),
        "social-assessment": ("social-worker", (7, "d"), (), True, True),
    },
    "heart-failure": {
        "inclusion": ("coordinator", (0, "d"), (), False, True),
        "gp-visit": ("gp", (7, "d"), (), False, True),
        "nurse-follow-up": ("idel", (8, 1, "wk"), (), False, True),
        "nurse-extended-follow-up": ("idel", (8, 2, "wk"), ("nurse-follow-up",), True, True),
        "self-monitoring": ("patient", (7, "d"), (), False, False),
        "therapeutic-education": ("coordinator", (2, "mo"), (), False, True),
        "medication-review": ("pharmacist", (1, "mo"), (), False, True),
        "cardiologist-visit": ("cardiologist", (2, "mo"), (), False, True),
        "yearly-review": ("gp", (1, "a"), (), False, True),
    },
    "osteoporosis": {
        "medication-reconciliation": ("pharmacist", (48, "h"), (), False, True),
        "densitometry": ("radiologist", (1, "mo"), (), False, True),
        "rheumatology-opinion": ("rheumatologist", (1, "mo"), ("densitometry",), False, True),
        "dental-check": ("dentist", (1, "mo"), (), False, True),
        "bisphosphonate-injection": (
            "idel",
            (1, "mo"),
            ("dental-check", "rheumatology-opinion"),
            False,
            True,
        ),
        "gp-follow-up": ("gp", (1, "mo"), (), False, True),
        "fall-prevention": ("coordinator", (3, "mo"), (), False, True),
    },
    "neurodevelopment": {
        "pco-validation": ("pco", (15, "d"), (), False, True),
        "first-assessment": ("assessor", (3, "mo"), ("pco-validation",), False, True),
        "pco-report": ("assessor", (1, "mo"), ("first-assessment",), False, True),
        "synthesis-meeting": ("pco", (6, "mo"), ("first-assessment",), False, True),
        "family-report": ("pco", (15, "d"), ("synthesis-meeting",), False, True),
        "gp-report": ("pco", (15, "d"), ("synthesis-meeting",), False, True),
        "pathway-review": ("pco", (1, "a"), ("pco-validation",), False, True),
        "renewal-review": ("pco", (1, "a"), ("pathway-review",), False, False),
    },
}


def _deadline(action: dict[str, Any]) -> tuple:
    if "timingDuration" in action:
        duration = action["timingDuration"]
        assert duration["system"] == "http://unitsofmeasure.org"
        return duration["value"], duration["code"]
    repeat = action["timingTiming"]["repeat"]
    return repeat["count"], repeat["period"], repeat["periodUnit"]


def _summary(action: dict[str, Any]) -> tuple[str, tuple, tuple[str, ...], bool, bool]:
    (participant,) = action["participant"]
    (role,) = participant["role"]["coding"]
    assert role["system"] == f"{CPTS}/CodeSystem/care-role"
    assert all(r["relationship"] == "after-end" for r in action.get("relatedAction", []))
    return (
        role["code"],
        _deadline(action),
        tuple(r["actionId"] for r in action.get("relatedAction", [])),
        bool(action.get("condition")),
        action["requiredBehavior"] == "must",
    )


def test_the_four_pathways_are_listed_and_read_with_their_steps(api: httpx.Client) -> None:
    listed = api.get("/PlanDefinition", params={"_count": 50}).json()
    assert {e["resource"]["id"] for e in listed["entry"]} == set(STEPS)
    for pathway, steps in STEPS.items():
        response = api.get(f"/PlanDefinition/{pathway}")
        assert response.status_code == 200, response.text
        plan = response.json()
        assert plan["url"] == f"{CPTS}/PlanDefinition/{pathway}"
        assert plan["status"] == "active" and plan["version"] == "1.0.0"
        assert {a["id"]: _summary(a) for a in plan["action"]} == steps
        for action in plan["action"]:
            (code,) = action["code"][0]["coding"]
            assert code["system"] == f"{CPTS}/CodeSystem/pathway-step"
            assert code["code"] == f"{pathway}.{action['id']}"
            found = api.get("/ActivityDefinition", params={"url": action["definitionCanonical"]})
            (entry,) = found.json()["entry"]
            assert entry["resource"]["code"]["coding"] == [code]
            assert entry["resource"]["kind"] == "Task"


def test_the_conditions_of_the_brief(api: httpx.Client) -> None:
    """NYHA III or IV for the extended nurse follow-up (LOINC 88020-3, answers III and IV), the
    dental check before the bisphosphonate, complex discharges to coordinator and social
    worker, and the funding source of the TND assessment."""
    heart = api.get("/PlanDefinition/heart-failure").json()
    extended = next(a for a in heart["action"] if a["id"] == "nurse-extended-follow-up")
    (condition,) = extended["condition"]
    assert condition["kind"] == "applicability"
    assert condition["expression"]["language"] == "text/fhirpath"
    for code in (NYHA, "LA28406-9", "LA28407-7"):  # functional class III, IV
        assert code in condition["expression"]["expression"]
    assert "LA28405-1" not in condition["expression"]["expression"]  # class II
    bone = api.get("/PlanDefinition/osteoporosis").json()
    injection = next(a for a in bone["action"] if a["id"] == "bisphosphonate-injection")
    assert {"actionId": "dental-check", "relationship": "after-end"} in injection["relatedAction"]
    tnd = api.get("/PlanDefinition/neurodevelopment").json()
    assessment = next(a for a in tnd["action"] if a["id"] == "first-assessment")
    assert assessment["extension"] == [
        {
            "url": f"{CPTS}/StructureDefinition/funding-source",
            "valueCoding": {
                "system": f"{CPTS}/CodeSystem/funding-source",
                "code": "pco-forfait",
                "display": "Forfait d'intervention précoce (PCO)",
            },
        }
    ]


def test_every_step_is_in_the_step_code_system() -> None:
    code_system = json.loads((PROFILES_DIR / "code-systems" / "pathway-step.json").read_text())
    shipped = {
        step["code"]: step["display"]
        for pathway in code_system["concept"]
        for step in pathway["concept"]
    }
    defined = {}
    for pathway in STEPS:
        bundle = json.loads((DEFINITIONS / f"{pathway}.json").read_text(encoding="utf-8"))
        plan = bundle["entry"][0]["resource"]
        for action in plan["action"]:
            (code,) = action["code"][0]["coding"]
            assert code["display"] == action["title"]
            defined[code["code"]] = code["display"]
    assert defined == shipped


def test_every_shipped_resource_is_stored(api: httpx.Client) -> None:
    """The definitions and the indicator Bundles beside them, whatever their resource types."""
    count = 0
    for path in sorted(DEFINITIONS.glob("*.json")):
        for entry in json.loads(path.read_text(encoding="utf-8"))["entry"]:
            shipped = entry["resource"]
            stored = api.get(f"/{shipped['resourceType']}/{shipped['id']}").json()
            assert stored["url"] == shipped["url"] and stored["version"] == shipped["version"]
            count += 1
    assert count > 4 * 5


def test_a_cpts_keeps_its_edits_until_a_newer_version_is_shipped(
    api: httpx.Client, server: Server
) -> None:
    assert catalogue.load_definitions(server) == 0  # all there: nothing written
    plan = api.get("/PlanDefinition/hospital-discharge").json()
    gp_visit = next(a for a in plan["action"] if a["id"] == "gp-visit")

    def stored() -> dict[str, Any]:
        return api.get("/PlanDefinition/hospital-discharge").json()

    def gp_deadline(resource: dict[str, Any]) -> int:
        return next(a for a in resource["action"] if a["id"] == "gp-visit")["timingDuration"][
            "value"
        ]

    gp_visit["timingDuration"]["value"] = 10
    assert api.put("/PlanDefinition/hospital-discharge", json=plan, headers=JSON).status_code == 200
    assert catalogue.load_definitions(server) == 0  # a restart keeps the edit
    assert gp_deadline(stored()) == 10

    plan = stored()
    plan["version"] = "0.9.0"  # older than shipped: the shipped one replaces it
    assert api.put("/PlanDefinition/hospital-discharge", json=plan, headers=JSON).status_code == 200
    assert catalogue.load_definitions(server) == 1
    assert stored()["version"] == "1.0.0" and gp_deadline(stored()) == 7

    plan = stored()
    plan["version"], plan["action"][2]["timingDuration"]["value"] = "1.0.1-cpts", 5
    assert api.put("/PlanDefinition/hospital-discharge", json=plan, headers=JSON).status_code == 200
    assert catalogue.load_definitions(server) == 0
    assert gp_deadline(stored()) == 5

    assert api.delete("/PlanDefinition/hospital-discharge").status_code == 204
    assert catalogue.load_definitions(server) == 0  # deleted by the CPTS: stays deleted
    assert api.get("/PlanDefinition/hospital-discharge").status_code == 410


def _action(plan: dict[str, Any], step: str) -> dict[str, Any]:
    return next(a for a in plan["action"] if a["id"] == step)


def _unknown_role(plan: dict[str, Any]) -> None:
    _action(plan, "gp-visit")["participant"][0]["role"]["coding"][0]["code"] = "physician"


def _unknown_dependency(plan: dict[str, Any]) -> None:
    _action(plan, "gp-visit")["relatedAction"] = [
        {"actionId": "cardiology", "relationship": "after-end"}
    ]


def _circular_dependency(plan: dict[str, Any]) -> None:
    _action(plan, "gp-visit")["relatedAction"] = [
        {"actionId": "yearly-review", "relationship": "after-end"}
    ]
    _action(plan, "yearly-review")["relatedAction"] = [
        {"actionId": "gp-visit", "relationship": "after-end"}
    ]


def _unsupported_relationship(plan: dict[str, Any]) -> None:
    _action(plan, "gp-visit")["relatedAction"] = [
        {"actionId": "inclusion", "relationship": "before-start"}
    ]


def _half_a_month(plan: dict[str, Any]) -> None:
    _action(plan, "cardiologist-visit")["timingDuration"]["value"] = 1.5


def _no_deadline(plan: dict[str, Any]) -> None:
    del _action(plan, "gp-visit")["timingDuration"]


def _unknown_variable(plan: dict[str, Any]) -> None:
    condition = _action(plan, "nurse-extended-follow-up")["condition"][0]["expression"]
    condition["expression"] = "%labs.exists()"


def _not_fhirpath(plan: dict[str, Any]) -> None:
    condition = _action(plan, "nurse-extended-follow-up")["condition"][0]["expression"]
    condition["expression"] = "%observations.where(("


def _wrong_step_code(plan: dict[str, Any]) -> None:
    _action(plan, "gp-visit")["code"][0]["coding"][0]["code"] = "heart-failure.gp"


def _unknown_funding(plan: dict[str, Any]) -> None:
    _action(plan, "gp-visit")["extension"] = [
        {
            "url": f"{CPTS}/StructureDefinition/funding-source",
            "valueCoding": {"system": f"{CPTS}/CodeSystem/funding-source", "code": "family"},
        }
    ]


@pytest.mark.parametrize(
    ("breaks", "said"),
    [
        (_unknown_role, "unknown role 'physician'"),
        (_unknown_dependency, "unknown step 'cardiology'"),
        (_circular_dependency, "depends on itself"),
        (_unsupported_relationship, "after-end"),
        (_half_a_month, "whole days"),
        (_no_deadline, "timingDuration or timingTiming"),
        (_unknown_variable, "unknown variables labs"),
        (_not_fhirpath, "not FHIRPath"),
        (_wrong_step_code, "heart-failure.gp-visit"),
        (_unknown_funding, "funding source"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_a_definition_that_cannot_be_applied_is_refused(
    api: httpx.Client, breaks: Callable[[dict[str, Any]], None], said: str
) -> None:
    current = api.get("/PlanDefinition/heart-failure").json()
    plan = copy.deepcopy(current)
    breaks(plan)
    response = api.put("/PlanDefinition/heart-failure", json=plan, headers=JSON)
    assert response.status_code == 422, response.text
    issues = response.json()["issue"]
    assert any(said in issue["diagnostics"] for issue in issues), issues
    assert all(issue["expression"][0].startswith("PlanDefinition") for issue in issues)
    assert api.get("/PlanDefinition/heart-failure").json() == current  # nothing stored


def test_the_operation_definition_is_served_and_declared(api: httpx.Client, server: Server) -> None:
    load_conformance(server)
    url = f"{CPTS}/OperationDefinition/PlanDefinition-apply"
    definition = api.get("/OperationDefinition/PlanDefinition-apply").json()
    assert definition["url"] == url and definition["affectsState"] is True
    assert definition["base"] == "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply"
    assert {p["name"] for p in definition["parameter"]} == {
        "subject",
        "encounter",
        "practitioner",
        "organization",
        "trigger",
        "return",
    }
    changed = {**definition, "status": "retired"}
    response = api.put("/OperationDefinition/PlanDefinition-apply", json=changed, headers=JSON)
    assert response.status_code == 405
    statement = api.get("/metadata").json()["rest"][0]
    plan_definition = next(r for r in statement["resource"] if r["type"] == "PlanDefinition")
    assert {"name": "apply", "definition": url} in plan_definition["operation"]
    declared = {
        o["definition"] for r in [*statement["resource"], statement] for o in r.get("operation", [])
    }
    for canonical in declared - {d for d in declared if d.startswith("http://hl7.org/fhir/")}:
        found = api.get("/OperationDefinition", params={"url": canonical}).json()
        assert found["total"] == 1, f"{canonical} is declared but not served"
