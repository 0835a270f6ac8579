"""Each role can do exactly what docs/security.md grants it, and nothing more: create, read,
update, search and delete on a patient-data type it writes and one it only reads, on the
directory, the definitions, the audit trail and the rest; the operations it may invoke; and
the token's scopes narrowing what the role allows. A refusal is a 403 OperationOutcome whose
issue is `forbidden`.

Professionals act on a patient of their care (cpts.MY_PATIENT), so that what is refused here
is refused by role or scope, never by relation (tests/security/test_relation.py)."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from fhir_server.security.tokens import LocalIssuer
from tests.conftest import LiveServer
from tests.rest.resources import put_transaction
from tests.security import cpts
from tests.security.conftest import AsRole, assert_forbidden, client, expect, ids

# What each role may do (c, r, u, s, d) on types standing for the groups of docs/security.md:
# a patient-data type it writes, one it only reads, the directory (Practitioner), the
# definitions (PlanDefinition), the audit trail (AuditEvent) and the rest (Binary).
PERMISSIONS: dict[str, dict[str, str]] = {
    "hospital": {
        "Observation": "crus",
        "Encounter": "crus",
        "Practitioner": "crus",
        "PlanDefinition": "rs",
        "AuditEvent": "",
        "Binary": "",
    },
    "gp": {
        "Condition": "crus",
        "Encounter": "rs",
        "Practitioner": "rs",
        "PlanDefinition": "rs",
        "AuditEvent": "",
        "Binary": "",
    },
    "pharmacist": {
        "Observation": "crus",
        "Task": "rus",
        "Condition": "rs",
        "Practitioner": "rs",
        "PlanDefinition": "rs",
        "AuditEvent": "",
        "Binary": "",
    },
    "idel": {
        "Observation": "crus",
        "Task": "rus",
        "Condition": "rs",
        "Practitioner": "rs",
        "PlanDefinition": "rs",
        "AuditEvent": "",
        "Binary": "",
    },
    "coordinator": {
        "CarePlan": "crus",
        "Observation": "rs",
        "Practitioner": "crus",
        "PlanDefinition": "rs",
        "AuditEvent": "",
        "Binary": "",
    },
    "auditor": {
        "Observation": "",
        "Practitioner": "rs",
        "PlanDefinition": "",
        "AuditEvent": "rs",
        "Binary": "",
    },
    "admin": {
        "Observation": "",
        "Practitioner": "cruds",
        "PlanDefinition": "cruds",
        "AuditEvent": "",
        "Binary": "cruds",
    },
}
# The operations each role may invoke.
OPERATIONS = {
    "hospital": {"validate"},
    "gp": {"validate"},
    "pharmacist": {"validate"},
    "idel": {"validate"},
    "coordinator": {"validate", "apply", "evaluate-measure"},
    "auditor": set(),
    "admin": {"validate", "meta"},
}
SUCCESS = {"c": 201, "r": 200, "u": 200, "s": 200, "d": 204}
ORDER = "crusd"  # delete last: it may remove what the others read


def seeded_id(type_: str, patient: str) -> str | None:
    """The id of the seeded resource of `type_` about `patient` (or the directory's)."""
    return {
        "Observation": f"obs-{patient}",
        "Condition": f"cond-{patient}",
        "Encounter": f"enc-{patient}",
        "Task": f"task-{patient}",
        "CarePlan": "cp-D",
        "Practitioner": "idel-2",
        "PlanDefinition": "pd-1",
    }.get(type_)


def new_resource(type_: str, patient: str) -> dict[str, Any]:
    """A resource of `type_` to create, about `patient` when it is patient data."""
    resource = {
        "Observation": lambda: cpts.observation("x", patient),
        "Condition": lambda: cpts.condition("x", patient),
        "Encounter": lambda: cpts.encounter("x", patient),
        "Task": lambda: cpts.task("x", patient),
        "CarePlan": lambda: cpts.care_plan("x", patient),
        "Practitioner": lambda: cpts.practitioner("x", "Nouveau"),
        "PlanDefinition": lambda: {"resourceType": "PlanDefinition", "status": "draft"},
        "Binary": lambda: {"resourceType": "Binary", "contentType": "text/plain", "data": "b2s="},
        "AuditEvent": lambda: {
            "resourceType": "AuditEvent",
            "type": {"code": "rest"},
            "recorded": "2025-01-01T00:00:00Z",
            "agent": [{"requestor": True}],
            "source": {"observer": {"display": "forged"}},
        },
    }[type_]()
    resource.pop("id", None)
    return resource


def attempt(
    client: httpx.Client, letter: str, type_: str, id_: str, patient: str
) -> httpx.Response:
    """One interaction (a letter of cruds) on `type_`; `id_` is the resource read, updated
    and deleted."""
    if letter == "c":
        return client.post(f"/{type_}", json=new_resource(type_, patient))
    if letter == "r":
        return client.get(f"/{type_}/{id_}")
    if letter == "u":
        return client.put(f"/{type_}/{id_}", json=to_update(type_, id_, patient))
    if letter == "s":
        return client.get(f"/{type_}", params={"_count": "5"})
    return client.delete(f"/{type_}/{id_}")


def to_update(type_: str, id_: str, patient: str) -> dict[str, Any]:
    """The seeded resource `type_/id_` with a change, or a new one at that id."""
    seed = cpts.directory() + cpts.patient_data()
    for resource in seed:
        if (resource["resourceType"], resource["id"]) == (type_, id_):
            return {**copy.deepcopy(resource), "language": "fr"}
    return {**new_resource(type_, patient), "id": id_}


@pytest.mark.parametrize("role", list(PERMISSIONS))
def test_each_role_does_exactly_what_it_is_granted(
    role: str, as_role: AsRole, auditor: httpx.Client
) -> None:
    client = as_role(role)
    patient = cpts.MY_PATIENT.get(role, "A")
    (an_audit_event,) = expect(auditor.get("/AuditEvent", params={"_count": "1"}), 200)["entry"]
    wrong: list[str] = []
    for type_, granted in PERMISSIONS[role].items():
        target = seeded_id(type_, patient) or (
            an_audit_event["resource"]["id"] if type_ == "AuditEvent" else None
        )
        for letter in ORDER:
            response = attempt(client, letter, type_, target or "none", patient)
            expected = SUCCESS[letter] if letter in granted else 403
            if target is None and response.status_code == 201:  # read, update, delete it
                target = response.json()["id"]
            if response.status_code != expected:
                wrong.append(f"{letter} {type_}: {response.status_code}, not {expected}")
            elif expected == 403:
                assert_forbidden(response)
    assert not wrong, f"{role}: " + "; ".join(wrong)


def operation(client: httpx.Client, name: str, patient: str) -> httpx.Response:
    if name == "validate":
        return client.post("/Practitioner/$validate", json=cpts.practitioner("v", "Valide"))
    if name == "meta":
        return client.get("/Practitioner/gp-1/$meta")
    if name == "apply":
        return client.post("/PlanDefinition/pd-1/$apply", params={"subject": f"Patient/{patient}"})
    return client.get(
        f"/Measure/{cpts.INCLUSIONS}/$evaluate-measure",
        params={
            "periodStart": "2025",
            "periodEnd": "2025",
            "reportType": "population",
            "organization": cpts.CPTS,
        },
    )


@pytest.mark.parametrize("name", ["validate", "meta", "apply", "evaluate-measure"])
def test_operations_are_invoked_by_the_roles_that_hold_them(name: str, as_role: AsRole) -> None:
    for role, allowed in OPERATIONS.items():
        response = operation(as_role(role), name, cpts.MY_PATIENT.get(role, "A"))
        if name in allowed:
            assert response.status_code != 403, f"{role} ${name}: {response.text[:300]}"
            codes = {i["code"] for i in response.json().get("issue", [])}
            assert "forbidden" not in codes, f"{role} ${name}"
        else:
            assert response.status_code == 403, f"{role} ${name}: {response.status_code}"
            assert_forbidden(response)


def test_allowed_operations_do_their_work(as_role: AsRole) -> None:
    """What the roles that hold them get: a validation, a resource's meta, an indicator
    report. ($apply, allowed, refuses pd-1 for not being a pathway: the pathway suite's
    business.)"""
    outcome = expect(operation(as_role("idel"), "validate", "A"), 200)
    assert outcome["resourceType"] == "OperationOutcome"
    meta = expect(operation(as_role("admin"), "meta", "A"), 200)
    assert meta["resourceType"] == "Parameters"
    report = expect(operation(as_role("coordinator"), "evaluate-measure", "D"), 200)
    (population,) = report["group"][0]["population"]
    assert population["count"] == 1  # D, included by the CPTS in March 2025


def test_an_operation_needs_read_on_its_type(as_role: AsRole) -> None:
    """The administrator validates directory resources, not patient data it may not read."""
    admin = as_role("admin")
    assert_forbidden(admin.post("/Observation/$validate", json=cpts.observation("v", "A")))
    assert_forbidden(admin.get("/Observation/obs-A/$meta"))
    expect(admin.get("/$meta"), 200)


def test_scopes_narrow_what_the_role_allows(as_role: AsRole) -> None:
    tasks_only = as_role("idel", scope="user/Task.rs")
    task = expect(tasks_only.get("/Task/task-A"), 200)
    assert_forbidden(
        tasks_only.put("/Task/task-A", json={**task, "owner": cpts.ref("Practitioner/idel-1")})
    )
    assert_forbidden(tasks_only.get("/Observation/obs-A"))
    assert_forbidden(tasks_only.post("/Observation", json=new_resource("Observation", "A")))

    v1_read = as_role("idel", scope="user/*.read")
    expect(v1_read.get("/Observation/obs-A"), 200)
    assert_forbidden(v1_read.post("/Observation", json=new_resource("Observation", "A")))

    # A conditional write is a search too: without `s`, refused.
    no_search = as_role("idel", scope="user/Observation.cru")
    conditional = {"identifier": f"{cpts.OBSERVATION_SYSTEM}|obs-A"}
    observation_a = cpts.observation("obs-A", "A")
    assert_forbidden(no_search.put("/Observation", params=conditional, json=observation_a))
    expect(no_search.put("/Observation/obs-A", json=observation_a), 200)

    granular = as_role("idel", scope="user/Observation.rs?category=vital-signs")
    assert_forbidden(granular.get("/Observation/obs-A"))
    assert_forbidden(granular.get("/Observation"))


def test_patient_scopes_reach_the_launch_patient_only(as_role: AsRole) -> None:
    """A hospital clinician's app launched on patient B, with `patient/*.rs`: B's data, and
    the directory, nothing else, and no writes."""
    launched = as_role("hospital", fhir_user="Practitioner/gp-1", scope="patient/*.rs", patient="B")
    assert ids(launched.get("/Observation")) == {"Observation/obs-B"}
    assert ids(launched.get("/Patient")) == {"Patient/B"}
    assert ids(launched.get("/Task")) == {"Task/task-B"}
    expect(launched.get("/Patient/B"), 200)
    assert_forbidden(launched.get("/Patient/A"))
    assert_forbidden(launched.get("/Observation/obs-C"))
    expect(launched.get("/Practitioner/gp-1"), 200)
    assert_forbidden(launched.post("/Observation", json=new_resource("Observation", "B")))


def test_patient_scopes_do_not_free_a_professional_from_the_relation(as_role: AsRole) -> None:
    """A GP's app launched on a patient outside the GP's care (C) still reads nothing of C:
    the launch context narrows access, it does not create a relation."""
    launched = as_role("gp", scope="patient/*.rs", patient="C")
    assert_forbidden(launched.get("/Patient/C"))
    assert_forbidden(launched.get("/Observation/obs-C"))
    assert ids(launched.get("/Observation")) == set()


def test_a_system_scope_in_a_user_token_grants_nothing(as_role: AsRole) -> None:
    user_with_system_scope = as_role("gp", scope="system/*.cruds")
    assert_forbidden(user_with_system_scope.get("/Patient/A"))
    assert_forbidden(user_with_system_scope.get("/Practitioner"))
    assert_forbidden(user_with_system_scope.post("/Condition", json=new_resource("Condition", "A")))
    system_with_user_scope = as_role("hospital", scope="user/*.cruds")
    assert_forbidden(system_with_user_scope.get("/Patient/A"))


def test_a_system_client_with_a_professionals_role_sees_no_patient(
    as_role: AsRole, secure_live: LiveServer
) -> None:
    """A client-credentials client given the gp role by mistake: a gp sees the patients of
    their care, and a system client cares for nobody."""
    token = LocalIssuer(secure_live.server.settings).issue(
        "gp-system", ["gp"], "system/*.cruds", client_id="gp-system"
    )
    with client(secure_live, token) as misconfigured:
        assert_forbidden(misconfigured.get("/Patient/A"))
        assert_forbidden(misconfigured.get("/Observation"))
        assert expect(misconfigured.get("/Practitioner"), 200)["total"] > 0  # the directory


def test_a_token_without_a_role_can_do_nothing(as_role: AsRole) -> None:
    nobody = as_role("", fhir_user="Practitioner/gp-1")
    for response in (
        nobody.get("/Patient/A"),
        nobody.get("/Observation"),
        nobody.get("/Practitioner/gp-1"),
        nobody.get("/PlanDefinition"),
        nobody.get("/AuditEvent"),
        nobody.post("/Observation", json=new_resource("Observation", "A")),
        nobody.post("/Practitioner/$validate", json=cpts.practitioner("v", "Valide")),
        nobody.get("/", params={"_type": "Practitioner"}),
    ):
        assert_forbidden(response)
    system_nobody = as_role("", client_id="unknown-system")
    assert_forbidden(system_nobody.get("/Patient/A"))
    assert_forbidden(system_nobody.post("/", json=put_transaction([cpts.patient("A")])))
