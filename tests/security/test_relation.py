"""A professional sees and writes a patient's data only while related to the patient
(docs/security.md, "Relation to the patient"): through an active CareTeam (as a Practitioner
or a PractitionerRole), a Task they own or requested, or, for a coordinator, a CarePlan
authored by the CPTS they hold an active PractitionerRole in. The relation is read from the
data at each request: a change applies to the next one.

Writes: what a professional writes must be theirs to see before and after; a new patient comes
with the CareTeam that relates its writer to them, in one transaction."""

from __future__ import annotations

import json

import httpx

from tests.security import cpts
from tests.security.conftest import AsRole, assert_forbidden, expect, ids, readable

PATIENT_A_DATA = ("Patient/A", "Observation/obs-A", "Condition/cond-A", "DocumentReference/doc-A")


def test_care_team_members_see_the_patient_while_the_team_is_active_and_lists_them(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    idel, gp, outsider = as_role("idel"), as_role("gp"), as_role("idel", cpts.OUTSIDER)
    assert readable(idel, *PATIENT_A_DATA) and readable(gp, *PATIENT_A_DATA)
    assert ids(idel.get("/Observation")) == {"Observation/obs-A"}
    assert ids(idel.get("/Encounter")) == {"Encounter/enc-A"}
    assert not readable(outsider, *PATIENT_A_DATA)
    assert ids(outsider.get("/Observation")) == set()

    team = cpts.care_team("ct-A", "A", [cpts.PRACTITIONER["gp"], cpts.PRACTITIONER["idel"]])
    expect(hospital.put("/CareTeam/ct-A", json={**team, "status": "inactive"}), 200)
    assert not readable(idel, *PATIENT_A_DATA)
    assert ids(idel.get("/Observation")) == set()
    assert readable(gp, *PATIENT_A_DATA)  # still the requester of task-A

    member = team["participant"][:1]  # the GP only
    expect(hospital.put("/CareTeam/ct-A", json={**team, "participant": member}), 200)
    assert not readable(idel, *PATIENT_A_DATA)
    assert ids(idel.get("/Patient")) == set()
    expect(hospital.put("/CareTeam/ct-A", json=team), 200)
    assert readable(idel, *PATIENT_A_DATA)


def test_owners_and_requesters_of_a_task_see_its_patient(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    pharmacist, outsider = as_role("pharmacist"), as_role("idel", cpts.OUTSIDER)
    assert readable(pharmacist, "Patient/B", "Observation/obs-B", "Task/task-B", "Encounter/enc-B")
    assert not readable(pharmacist, "Patient/A", "Observation/obs-C")
    assert ids(pharmacist.get("/Patient")) == {"Patient/B"}

    assert not readable(outsider, "Patient/C", "Observation/obs-C")
    requested = cpts.task("task-C2", "C", requester=cpts.OUTSIDER)
    expect(hospital.put("/Task/task-C2", json=requested), 201)
    assert readable(outsider, "Patient/C", "Observation/obs-C", "Task/task-C")

    reassigned = cpts.task("task-B", "B", owner=cpts.OUTSIDER)
    expect(hospital.put("/Task/task-B", json=reassigned), 200)
    assert not readable(pharmacist, "Patient/B", "Observation/obs-B", "Task/task-B")
    assert readable(outsider, "Patient/B", "Observation/obs-B")

    # A Task about no patient is nobody's data: every professional sees it.
    expect(hospital.put("/Task/no-patient", json=cpts.task("no-patient", None)), 201)
    assert readable(pharmacist, "Task/no-patient") and readable(as_role("gp"), "Task/no-patient")


def test_coordinators_see_the_patients_of_their_cpts_care_plans(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    coordinator = as_role("coordinator")
    assert readable(coordinator, "Patient/D", "Observation/obs-D", "Task/task-D", "CarePlan/cp-D")
    assert not readable(coordinator, "Patient/A", "Patient/C")
    assert ids(coordinator.get("/Patient")) == {"Patient/D"}

    # A GP holding a role in the CPTS is no coordinator: the CPTS's CarePlans relate them to no
    # one.
    role = cpts.practitioner_role("gp-1-cpts", cpts.PRACTITIONER["gp"])
    expect(hospital.put("/PractitionerRole/gp-1-cpts", json=role), 201)
    assert not readable(as_role("gp"), "Patient/D")

    # A CarePlan authored by another organization relates no coordinator of the CPTS.
    other = cpts.care_plan("cp-C", "C", author="Organization/elsewhere")
    expect(hospital.put("/CarePlan/cp-C", json=other), 201)
    assert not readable(coordinator, "Patient/C")

    # Once their PractitionerRole in the CPTS is inactive, the coordinator sees D no more.
    inactive = cpts.practitioner_role(
        "coord-1-cpts", cpts.PRACTITIONER["coordinator"], active=False
    )
    expect(hospital.put("/PractitionerRole/coord-1-cpts", json=inactive), 200)
    assert not readable(coordinator, "Patient/D", "Observation/obs-D", "CarePlan/cp-D")
    assert ids(coordinator.get("/Patient")) == set()


def test_membership_through_a_practitioner_role(as_role: AsRole, hospital: httpx.Client) -> None:
    role = cpts.practitioner_role("idel-2-cabinet", cpts.OUTSIDER, "Organization/cabinet")
    expect(hospital.put("/PractitionerRole/idel-2-cabinet", json=role), 201)
    team = cpts.care_team("ct-C", "C", ["PractitionerRole/idel-2-cabinet"])
    expect(hospital.put("/CareTeam/ct-C", json=team), 201)

    as_practitioner = as_role("idel", cpts.OUTSIDER)
    as_practitioner_role = as_role("idel", "PractitionerRole/idel-2-cabinet")
    for nurse in (as_practitioner, as_practitioner_role):
        assert readable(nurse, "Patient/C", "Observation/obs-C", "CareTeam/ct-C")
        assert ids(nurse.get("/Observation")) == {"Observation/obs-C"}
    assert not readable(as_role("idel"), "Patient/C")


def test_a_professional_writes_only_data_of_patients_in_their_care(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    idel = as_role("idel")
    # Create about a patient outside their care: refused, nothing stored.
    assert_forbidden(idel.post("/Observation", json=cpts.observation("x", "C")))
    assert_forbidden(idel.put("/Observation/new-C", json=cpts.observation("new-C", "C")))
    # A resource belongs to every patient it names: one of them outside their care is enough.
    both = cpts.observation("x", "A", performer="Patient/C")
    assert_forbidden(idel.post("/Observation", json=both))
    assert ids(hospital.get("/Observation", params={"subject": "Patient/C"})) == {
        "Observation/obs-C"
    }
    assert hospital.get("/Observation/new-C").status_code == 404
    assert ids(hospital.get("/Observation", params={"performer": "Patient/C"})) == set()

    # Move a resource of their patient to another patient: refused, unchanged.
    moved = cpts.observation("obs-A", "C", cpts.PRACTITIONER["idel"])
    assert_forbidden(idel.put("/Observation/obs-A", json=moved))
    patch = [{"op": "replace", "path": "/subject/reference", "value": "Patient/C"}]
    assert_forbidden(
        idel.patch(
            "/Observation/obs-A",
            content=json.dumps(patch),
            headers={"content-type": "application/json-patch+json"},
        )
    )
    # Update a resource they cannot see, even to bring it into their care: refused.
    taken = cpts.observation("obs-C", "A")
    assert_forbidden(idel.put("/Observation/obs-C", json=taken))
    assert_forbidden(as_role("gp").put("/Patient/C", json=cpts.patient("C") | {"gender": "male"}))

    for id_, subject in (("obs-A", "Patient/A"), ("obs-C", "Patient/C")):
        stored = expect(hospital.get(f"/Observation/{id_}"), 200)
        assert stored["meta"]["versionId"] == "1" and stored["subject"]["reference"] == subject
    assert expect(hospital.get("/Patient/C"), 200)["meta"]["versionId"] == "1"

    # Within their care, the same writes are theirs to make.
    expect(idel.post("/Observation", json=cpts.observation("x", "A")), 201)
    expect(
        idel.put("/Observation/obs-A", json=cpts.observation("obs-A", "A") | {"status": "amended"}),
        200,
    )


def test_a_coordinator_enrols_a_patient_with_their_care_team_in_one_transaction(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    coordinator = as_role("coordinator")
    newcomer = cpts.patient("A") | {"name": [{"family": "Etienne"}]}
    newcomer.pop("id")
    newcomer["identifier"] = [{"system": cpts.IPP_SYSTEM, "value": "IPP-E"}]

    assert_forbidden(coordinator.post("/Patient", json=newcomer))
    assert ids(hospital.get("/Patient", params={"family": "Etienne"})) == set()

    team = cpts.care_team("x", "A", [cpts.PRACTITIONER["coordinator"]])
    team.pop("id")
    team["subject"] = cpts.ref("urn:uuid:0b6c7f0e-1d64-4c5e-9a55-0d1f5e2a6c11")
    enrolment = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0b6c7f0e-1d64-4c5e-9a55-0d1f5e2a6c11",
                "resource": newcomer,
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": team, "request": {"method": "POST", "url": "CareTeam"}},
        ],
    }
    response = expect(coordinator.post("/", json=enrolment), 200)
    location = response["entry"][0]["response"]["location"]
    patient_id = location.split("/")[1]
    expect(coordinator.get(f"/Patient/{patient_id}"), 200)
    assert ids(coordinator.get("/Patient", params={"family": "Etienne"})) == {
        f"Patient/{patient_id}"
    }


def test_a_nurse_claims_an_unassigned_task_of_a_patient_of_their_care_team(
    as_role: AsRole,
) -> None:
    idel, outsider = as_role("idel"), as_role("idel", cpts.OUTSIDER)
    response = idel.get("/Task/task-A")
    task = expect(response, 200)
    assert "owner" not in task
    etag = response.headers["etag"]
    claimed = {**task, "owner": cpts.ref(cpts.PRACTITIONER["idel"]), "status": "accepted"}
    claimed.pop("meta")

    assert_forbidden(outsider.put("/Task/task-A", json=claimed, headers={"if-match": etag}))
    response = idel.put("/Task/task-A", json=claimed, headers={"if-match": etag})
    assert expect(response, 200)["owner"] == cpts.ref(cpts.PRACTITIONER["idel"])
    # The claim was made on version 1: claiming it again with that version is too late.
    again = as_role("gp").put("/Task/task-A", json=claimed, headers={"if-match": etag})
    assert again.status_code == 412


def test_a_professional_cannot_relate_themselves_to_a_patient_by_writing(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    """The writes that make a relation (a Task they own, a sharing Consent naming them) are
    writes of the patient's data: outside their care, refused, and C stays hidden."""
    gp, idel = as_role("gp"), as_role("idel")
    own_task = cpts.task("x", "C", owner=cpts.PRACTITIONER["gp"])
    del own_task["id"]
    sharing = cpts.consent("x", "C", "INFA", "permit", (cpts.PRACTITIONER["gp"],))
    del sharing["id"]
    task_a = expect(idel.get("/Task/task-A"), 200)
    moved_task = {
        **task_a,
        "for": cpts.ref("Patient/C"),
        "owner": cpts.ref(cpts.PRACTITIONER["idel"]),
    }
    statuses = {
        "GP creates a Task of C for themselves": gp.post("/Task", json=own_task).status_code,
        "GP creates a Consent of C sharing with them": gp.post(
            "/Consent", json=sharing
        ).status_code,
        "nurse moves a Task of A to C, as its owner": idel.put(
            "/Task/task-A", json=moved_task
        ).status_code,
    }
    assert statuses == dict.fromkeys(statuses, 403)
    assert not readable(gp, "Patient/C", "Observation/obs-C")
    assert not readable(idel, "Patient/C", "Observation/obs-C")
    assert ids(hospital.get("/Task", params={"patient": "Patient/C"})) == {"Task/task-C"}
    assert ids(hospital.get("/Consent")) == set()


def test_one_search_by_callers_related_to_different_patients_finds_each_their_own(
    as_role: AsRole,
) -> None:
    """The server builds a search's SQL once per shape, the caller's relation included, and
    binds the values of each request: the patients of one caller never serve another."""
    idel, pharmacist, outsider = (
        as_role("idel"),
        as_role("pharmacist"),
        as_role("idel", cpts.OUTSIDER),
    )
    query = {"status": "final", "code": "http://loinc.org|29463-7"}
    expected = [
        (idel, {"Observation/obs-A"}),
        (pharmacist, {"Observation/obs-B"}),
        (outsider, set()),
    ]
    for caller, observations in [*expected, *reversed(expected), *expected]:
        assert ids(caller.get("/Observation", params=query)) == observations
        assert ids(
            caller.get("/Observation", params={"identifier": f"{cpts.OBSERVATION_SYSTEM}|obs-A"})
        ) == (observations & {"Observation/obs-A"})
