"""The patient's word over who sees their data (CSP L.1110-4, docs/security.md "Consent"):
an opposition (Consent IDSCL, deny) hides them from their care team, or from the
professionals it names, over its period; a sharing consent (INFA, permit) relates a
professional outside the care team. Both are read at every request. The Consents themselves
stay visible to the care team, so that an opposition can be withdrawn; the hospital, the
source of the data, is bound by neither."""

from __future__ import annotations

import httpx

from tests.security import cpts
from tests.security.conftest import AsRole, assert_forbidden, expect, ids, readable

A_DATA = ("Patient/A", "Observation/obs-A", "Task/task-A", "DocumentReference/doc-A")
OPPOSITION, SHARING = "IDSCL", "INFA"


def test_an_opposition_hides_the_patient_from_the_care_team_until_withdrawn(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    gp, idel = as_role("gp"), as_role("idel")
    opposition = cpts.consent("opp-A", "A", OPPOSITION, "deny")
    expect(gp.put("/Consent/opp-A", json=opposition), 201)

    for member in (gp, idel):
        assert not readable(member, *A_DATA)
        assert ids(member.get("/Observation")) == set()
        assert ids(member.get("/Patient")) == set()
        assert_forbidden(member.get("/Patient/A"))
        # The opposition itself stays in sight, to be withdrawn.
        expect(member.get("/Consent/opp-A"), 200)
        assert ids(member.get("/Consent", params={"patient": "Patient/A"})) == {"Consent/opp-A"}
        # ... without opening a door to the patient.
        params = {"_id": "opp-A", "_include": "Consent:patient"}
        assert ids(member.get("/Consent", params=params)) == {"Consent/opp-A"}
    assert_forbidden(idel.post("/Observation", json=cpts.observation("x", "A")))

    expect(gp.put("/Consent/opp-A", json={**opposition, "status": "inactive"}), 200)
    assert readable(gp, *A_DATA) and readable(idel, *A_DATA)
    assert ids(idel.get("/Observation")) == {"Observation/obs-A"}


def test_a_coordinator_withdraws_an_opposition_of_a_patient_of_their_pathways(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    coordinator = as_role("coordinator")
    opposition = cpts.consent("opp-D", "D", OPPOSITION, "deny")
    expect(hospital.put("/Consent/opp-D", json=opposition), 201)
    assert not readable(coordinator, "Patient/D", "CarePlan/cp-D", "Task/task-D")
    withdrawn = {**expect(coordinator.get("/Consent/opp-D"), 200), "status": "inactive"}
    expect(coordinator.put("/Consent/opp-D", json=withdrawn), 200)
    assert readable(coordinator, "Patient/D", "CarePlan/cp-D", "Task/task-D")


def test_an_opposition_naming_professionals_hides_the_patient_from_them_only(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    gp, idel = as_role("gp"), as_role("idel")
    expect(
        hospital.put(
            "/Consent/opp-idel",
            json=cpts.consent("opp-idel", "A", OPPOSITION, "deny", (cpts.PRACTITIONER["idel"],)),
        ),
        201,
    )
    assert not readable(idel, *A_DATA)
    assert ids(idel.get("/Observation")) == set()
    assert readable(gp, *A_DATA)

    # Named through a PractitionerRole of theirs, the GP is excluded too.
    role = cpts.practitioner_role("gp-1-cabinet", cpts.PRACTITIONER["gp"], "Organization/cab")
    expect(hospital.put("/PractitionerRole/gp-1-cabinet", json=role), 201)
    by_role = cpts.consent("opp-gp", "A", OPPOSITION, "deny", ("PractitionerRole/gp-1-cabinet",))
    expect(hospital.put("/Consent/opp-gp", json=by_role), 201)
    assert not readable(gp, *A_DATA)


def test_an_opposition_applies_over_its_period_only(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    gp = as_role("gp")
    periods = {
        "future": {"start": "2099-01-01"},
        "past": {"start": "2001-01-01", "end": "2002-01-01"},
    }
    for name, period in periods.items():
        consent = cpts.consent(f"opp-{name}", "A", OPPOSITION, "deny", period=period)
        expect(hospital.put(f"/Consent/opp-{name}", json=consent), 201)
    assert readable(gp, *A_DATA)
    current = cpts.consent("opp-now", "A", OPPOSITION, "deny", period={"start": "2020-01-01"})
    expect(hospital.put("/Consent/opp-now", json=current), 201)
    assert not readable(gp, *A_DATA)


def test_a_sharing_consent_relates_a_professional_outside_the_care_team(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    outsider, idel = as_role("idel", cpts.OUTSIDER), as_role("idel")
    c_data = ("Patient/C", "Observation/obs-C", "Condition/cond-C", "DocumentReference/doc-C")
    assert not readable(outsider, *c_data)
    sharing = cpts.consent("share-C", "C", SHARING, "permit", (cpts.OUTSIDER,))
    expect(hospital.put("/Consent/share-C", json=sharing), 201)
    assert readable(outsider, *c_data)
    assert ids(outsider.get("/Observation")) == {"Observation/obs-C"}
    expect(outsider.post("/Observation", json=cpts.observation("x", "C")), 201)
    assert not readable(idel, *c_data)  # shared with one nurse, not with every nurse

    expired = {**sharing, "provision": {**sharing["provision"], "period": {"end": "2020-01-01"}}}
    expect(hospital.put("/Consent/share-C", json=expired), 200)
    assert not readable(outsider, *c_data)
    expect(hospital.put("/Consent/share-C", json=sharing), 200)
    assert readable(outsider, *c_data)
    expect(hospital.put("/Consent/share-C", json={**sharing, "status": "inactive"}), 200)
    assert not readable(outsider, *c_data)


def test_a_consent_whose_category_and_provision_disagree_is_refused(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    gp = as_role("gp")
    wrong = {
        "permitting-opposition": cpts.consent("w1", "A", OPPOSITION, "permit"),
        "denying-sharing": cpts.consent("w2", "A", SHARING, "deny", (cpts.OUTSIDER,)),
        "sharing-with-nobody": cpts.consent("w3", "A", SHARING, "permit"),
    }
    for name, consent in wrong.items():
        for writer in (gp, hospital):
            response = writer.put(f"/Consent/{consent['id']}", json=consent)
            assert response.status_code == 422, (name, response.text)
            assert response.json()["issue"][0]["code"] == "business-rule"
    assert ids(hospital.get("/Consent")) == set()
    assert not readable(as_role("idel", cpts.OUTSIDER), *A_DATA)


def test_the_hospital_writes_and_reads_the_data_of_an_opposing_patient(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    gp = as_role("gp")
    expect(gp.put("/Consent/opp-A", json=cpts.consent("opp-A", "A", OPPOSITION, "deny")), 201)
    created = expect(hospital.post("/Observation", json=cpts.observation("x", "A")), 201)
    expect(hospital.get(f"/Observation/{created['id']}"), 200)
    expect(hospital.get("/Patient/A"), 200)
    assert f"Observation/{created['id']}" in ids(
        hospital.get("/Observation", params={"subject": "Patient/A"})
    )
    assert_forbidden(gp.get(f"/Observation/{created['id']}"))
