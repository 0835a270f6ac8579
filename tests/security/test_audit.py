"""The audit trail (docs/security.md, "Audit trail"): one AuditEvent per read, search, write
and refusal, saying who, what, when, from where, with what outcome and why, and never what
the data holds; none for the writes of a rolled-back unit of work; readable by auditors only
and written by nobody through the API. The HL7 v2 door is a hospital's, audited as such.
Every FHIR route needs a token; the discovery documents do not."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import jwt
import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from tests.adapters.hl7v2.messages import adt
from tests.rest.resources import put_transaction
from tests.security import cpts
from tests.security.conftest import AsRole, assert_forbidden, audit_events, expect, ids

ROLES = ("hospital", "gp", "pharmacist", "idel", "coordinator", "auditor", "admin")
PATIENT = "1"  # object-role: the patient the data is about
DOMAIN_RESOURCE = "4"  # object-role: the resource read or written
QUERY = "24"  # object-role: the query of a search


def token_id(client: httpx.Client) -> str:
    token = client.headers["authorization"].split()[1]
    return jwt.decode(token, options={"verify_signature": False})["jti"]


def entities(event: dict[str, Any], role: str) -> list[str]:
    return [
        e["what"]["reference"]
        for e in event.get("entity", [])
        if e["role"]["code"] == role and "what" in e
    ]


def one(events: list[dict[str, Any]], **where: Any) -> dict[str, Any]:
    """The single event whose subtype / action / outcome / written resource match."""
    found = [
        e
        for e in events
        if all(
            {
                "subtype": e["subtype"][0]["code"],
                "action": e["action"],
                "outcome": e["outcome"],
                "entity": entities(e, DOMAIN_RESOURCE),
            }[key]
            == value
            for key, value in where.items()
        )
    ]
    assert len(found) == 1, (where, [json.dumps(e)[:300] for e in events])
    return found[0]


def test_each_access_is_recorded_with_who_what_where_outcome_and_why(
    as_role: AsRole, auditor: httpx.Client, hospital: httpx.Client
) -> None:
    idel = as_role("idel")
    expect(idel.get("/Patient/A"), 200)
    expect(idel.get("/Observation", params={"code": "29463-7"}), 200)
    created = expect(idel.post("/Observation", json=cpts.observation("x", "A")), 201)
    expect(idel.put("/Observation/obs-A", json=cpts.observation("obs-A", "A")), 200)
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    response = idel.patch(
        "/Observation/obs-A",
        content=json.dumps(patch),
        headers={"content-type": "application/json-patch+json"},
    )
    expect(response, 200)
    assert_forbidden(idel.get("/Patient/C"))
    expect(idel.get("/Observation/obs-A/_history"), 200)

    events = audit_events(auditor, agent=cpts.PRACTITIONER["idel"])
    assert len(events) == 7
    read = one(events, subtype="read", entity=["Patient/A"])
    search = one(events, subtype="search-type")
    create = one(events, subtype="create")
    update = one(events, subtype="update")
    patched = one(events, subtype="patch")
    refusal = one(events, subtype="read", outcome="4")
    history = one(events, subtype="history-instance")

    for event in events:
        (agent,) = event["agent"]
        assert agent["who"] == {"reference": cpts.PRACTITIONER["idel"]}
        assert agent["altId"] == "idel-1"
        assert agent["requestor"] is True
        assert agent["role"] == [{"text": "idel"}]
        assert agent["network"] == {"address": "127.0.0.1", "type": "2"}
        assert agent["policy"] == [f"urn:uuid:{token_id(idel)}"]
        assert event["source"]["site"] == "rest"
        assert event["type"]["code"] == "rest"
        assert event["recorded"]
        assert [c["code"] for p in event["purposeOfEvent"] for c in p["coding"]] == ["TREAT"]
        AuditEvent.model_validate(event)  # an R4 AuditEvent

    assert (read["action"], read["outcome"]) == ("R", "0")
    assert entities(read, PATIENT) == ["Patient/A"]
    assert (search["action"], search["outcome"]) == ("R", "0")
    (query,) = [e for e in search["entity"] if e["role"]["code"] == QUERY]
    assert base64.b64decode(query["query"]).decode() == "code=29463-7"
    assert query["description"] == "Observation"
    assert entities(search, PATIENT) == ["Patient/A"]
    assert (create["action"], entities(create, DOMAIN_RESOURCE)) == (
        "C",
        [f"Observation/{created['id']}/_history/1"],
    )
    assert (update["action"], entities(update, DOMAIN_RESOURCE)) == (
        "U",
        ["Observation/obs-A/_history/2"],
    )
    assert (patched["action"], entities(patched, DOMAIN_RESOURCE)) == (
        "U",
        ["Observation/obs-A/_history/3"],
    )
    for write in (create, update, patched):
        assert write["outcome"] == "0" and entities(write, PATIENT) == ["Patient/A"]
    assert refusal["action"] == "R"
    assert entities(refusal, DOMAIN_RESOURCE) == ["Patient/C"]
    assert entities(refusal, PATIENT) == ["Patient/C"]
    assert "outside your care" in refusal["outcomeDesc"]
    assert (history["action"], entities(history, DOMAIN_RESOURCE)) == ("R", ["Observation/obs-A"])

    # Why: care management for the coordinator, administration for the auditor; the hospital
    # is a system client, named by its client id. An operation is an execution, named.
    coordinator = as_role("coordinator")
    expect(coordinator.get("/Patient/D"), 200)
    measure = f"/Measure/{cpts.INCLUSIONS}/$evaluate-measure"
    period = {"periodStart": "2025", "periodEnd": "2025", "reportType": "population"}
    expect(coordinator.get(measure, params={**period, "organization": cpts.CPTS}), 200)
    coordinator_events = audit_events(auditor, agent=cpts.PRACTITIONER["coordinator"])
    coordinator_read = one(coordinator_events, subtype="read", entity=["Patient/D"])
    assert coordinator_read["purposeOfEvent"][0]["coding"][0]["code"] == "CAREMGT"
    evaluation = one(coordinator_events, subtype="operation")
    assert evaluation["action"] == "E"
    assert {"name": "$evaluate-measure"}.items() <= next(
        e for e in evaluation["entity"] if e["role"]["code"] == "20"
    ).items()
    AuditEvent.model_validate(evaluation)
    auditor_searches = audit_events(auditor, agent=cpts.PRACTITIONER["auditor"])
    assert {e["purposeOfEvent"][0]["coding"][0]["code"] for e in auditor_searches} == {"HSYSADMIN"}
    expect(hospital.get("/Observation/obs-C"), 200)
    hospital_events = [
        e for e in audit_events(auditor, subtype="read") if "identifier" in e["agent"][0]["who"]
    ]
    (hospital_read,) = hospital_events
    assert hospital_read["agent"][0]["who"]["identifier"] == {
        "system": "urn:cpts-fhir:client",
        "value": cpts.HOSPITAL_CLIENT,
    }
    assert hospital_read["agent"][0]["role"] == [{"text": "hospital"}]
    AuditEvent.model_validate(hospital_read)


def test_no_audit_event_holds_what_the_data_says(as_role: AsRole, auditor: httpx.Client) -> None:
    gp = as_role("gp")
    expect(gp.get("/Observation/obs-A"), 200)
    expect(gp.get("/Patient", params={"family": cpts.FAMILY["A"]}), 200)
    expect(gp.get("/Observation", params={"_include": "Observation:subject"}), 200)
    expect(gp.put("/Observation/obs-A", json=cpts.observation("obs-A", "A")), 200)
    events = audit_events(auditor)
    assert len(events) > 40  # the seed's writes and these accesses
    trail = json.dumps(events, ensure_ascii=False)
    for patient in cpts.PATIENTS:
        assert cpts.note_mark(patient) not in trail
        assert cpts.FAMILY[patient] not in trail
    assert "29463-7" not in trail and "TGV0dHJl" not in trail  # a code, a document's bytes


def test_patient_search_finds_every_access_to_a_patients_data(
    as_role: AsRole, auditor: httpx.Client
) -> None:
    idel, pharmacist = as_role("idel"), as_role("pharmacist")
    expect(idel.get("/DocumentReference/doc-A"), 200)
    expect(idel.get("/Task", params={"status": "requested"}), 200)
    expect(idel.get("/Condition/cond-A/_history"), 200)
    expect(pharmacist.get("/Observation/obs-B"), 200)
    assert_forbidden(pharmacist.get("/Observation/obs-A"))

    about_a = audit_events(auditor, patient="Patient/A")
    for event in about_a:
        assert "Patient/A" in entities(event, PATIENT)
    assert "Patient/B" not in {r for e in about_a for r in entities(e, PATIENT)}
    # The seed's writes of A's data are accesses to A's data too.
    written = {r for e in about_a if e["action"] in "CU" for r in entities(e, DOMAIN_RESOURCE)}
    assert {"Patient/A/_history/1", "Observation/obs-A/_history/1"} <= written
    accesses = {
        (e["agent"][0]["who"].get("reference"), e["subtype"][0]["code"], e["outcome"])
        for e in about_a
        if e["action"] == "R"
    }
    idel_1, pharm_1 = cpts.PRACTITIONER["idel"], cpts.PRACTITIONER["pharmacist"]
    expected = {
        (idel_1, "read", "0"),
        (idel_1, "search-type", "0"),
        (idel_1, "history-instance", "0"),  # every version of A's Condition
        (pharm_1, "read", "4"),  # the pharmacist's refused attempt at A's Observation
    }
    assert expected - accesses == set()


def test_rolled_back_writes_leave_no_audit_event_and_refusals_leave_one(
    as_role: AsRole, auditor: httpx.Client, hospital: httpx.Client
) -> None:
    def mentioning(reference: str) -> list[dict[str, Any]]:
        return [
            e
            for e in audit_events(auditor)
            if any(r.startswith(reference) for r in entities(e, DOMAIN_RESOURCE))
        ]

    failing = put_transaction(
        [
            cpts.observation("tx-1", "A"),
            cpts.consent("tx-bad", "A", "IDSCL", "permit"),  # 422: an opposition that permits
        ]
    )
    response = hospital.post("/", json=failing)
    assert response.status_code == 422, response.text
    assert mentioning("Observation/tx-1") == []
    assert hospital.get("/Observation/tx-1").status_code == 404
    assert audit_events(auditor, outcome="4") == []  # a 422 is no refusal

    idel = as_role("idel")
    refused = put_transaction([cpts.observation("tx-2", "A"), cpts.observation("tx-3", "C")])
    assert_forbidden(idel.post("/", json=refused))
    assert mentioning("Observation/tx-2") == []
    (refusal,) = audit_events(auditor, outcome="4")
    assert refusal["agent"][0]["who"] == {"reference": cpts.PRACTITIONER["idel"]}
    assert entities(refusal, DOMAIN_RESOURCE) == ["Observation/tx-3"]
    AuditEvent.model_validate(refusal)
    assert entities(refusal, PATIENT) == ["Patient/C"]  # what the refused write was about


def test_only_auditors_read_the_trail_and_nobody_changes_it(
    as_role: AsRole, auditor: httpx.Client
) -> None:
    events = audit_events(auditor)
    target = events[0]
    path = f"/AuditEvent/{target['id']}"
    before = expect(auditor.get(path), 200)
    forged = {**before, "outcome": "0", "outcomeDesc": "forged"}
    patch = [{"op": "replace", "path": "/outcome", "value": "8"}]
    for role in ROLES:
        client = as_role(role)
        if role != "auditor":
            assert_forbidden(client.get("/AuditEvent"))
            assert_forbidden(client.get(path))
            assert_forbidden(client.get("/", params={"_type": "AuditEvent"}))
        new = {k: v for k, v in forged.items() if k not in ("id", "meta")}
        for response in (
            client.post("/AuditEvent", json=new),
            client.put(path, json=forged),
            client.put("/AuditEvent/forged", json={**forged, "id": "forged"}),
            client.patch(
                path,
                content=json.dumps(patch),
                headers={"content-type": "application/json-patch+json"},
            ),
            client.delete(path),
            client.delete("/AuditEvent", params={"outcome": "0"}),
            client.post(
                "/",
                json={
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [{"request": {"method": "DELETE", "url": path[1:]}}],
                },
            ),
        ):
            assert_forbidden(response)
    after = expect(auditor.get(path), 200)
    assert after == before
    assert auditor.get("/AuditEvent/forged").status_code == 404

    # The trail opens no door to the data it names, nor to others the trail itself.
    included = ids(auditor.get("/AuditEvent", params={"_include": "AuditEvent:entity"}))
    assert {r.split("/")[0] for r in included} <= {
        "AuditEvent",
        "Practitioner",
        "Organization",
        "PractitionerRole",
    }
    assert ids(auditor.get("/AuditEvent", params={"patient.name": cpts.FAMILY["A"]})) == set()
    gp = as_role("gp")
    params = {"_id": "gp-1", "_revinclude": "AuditEvent:agent"}
    assert ids(gp.get("/Practitioner", params=params)) == {"Practitioner/gp-1"}
    assert ids(gp.get("/Practitioner", params={"_has:AuditEvent:agent:outcome": "0"})) == set()


def test_hl7v2_messages_need_a_hospital_token_and_are_audited_as_the_doors(
    as_role: AsRole, anonymous: httpx.Client, auditor: httpx.Client, hospital: httpx.Client
) -> None:
    message = adt("A04", "SEC-0001")
    headers = {"content-type": "application/hl7-v2"}
    refused = anonymous.post("/hl7v2", content=message, headers=headers)
    assert refused.status_code == 401
    assert_forbidden(as_role("idel").post("/hl7v2", content=message, headers=headers))
    assert audit_events(auditor, site="hl7v2") == []

    ack = hospital.post("/hl7v2", content=message, headers=headers)
    assert ack.status_code == 200
    assert "MSA|AA|SEC-0001" in ack.text
    written = audit_events(auditor, site="hl7v2")
    assert written and {e["action"] for e in written} <= {"C", "U", "R"}
    assert "Patient" in {r.split("/")[0] for e in written for r in entities(e, DOMAIN_RESOURCE)}
    for event in written:
        assert event["agent"][0]["who"]["identifier"]["value"] == cpts.HOSPITAL_CLIENT
        assert event["outcome"] == "0"
        AuditEvent.model_validate(event)


FHIR_ROUTES = [
    ("GET", "/Patient", None),
    ("GET", "/Patient/A", None),
    ("POST", "/Patient", cpts.patient("A")),
    ("PUT", "/Patient/A", cpts.patient("A")),
    ("PUT", "/Patient?identifier=IPP-A", cpts.patient("A")),
    ("PATCH", "/Patient/A", []),
    ("PATCH", "/Patient?identifier=IPP-A", []),
    ("DELETE", "/Patient/A", None),
    ("DELETE", "/Patient?identifier=IPP-A", None),
    ("GET", "/Patient/A/_history", None),
    ("GET", "/Patient/A/_history/1", None),
    ("GET", "/Patient/_history", None),
    ("GET", "/_history", None),
    ("GET", "/", None),
    ("GET", "/?_type=Patient", None),
    ("POST", "/", put_transaction([cpts.patient("A")])),
    ("POST", "/Patient/_search", None),
    ("GET", "/Patient/A/Observation", None),
    ("GET", "/$meta", None),
    ("GET", "/Patient/$meta", None),
    ("GET", "/Patient/A/$meta", None),
    ("POST", "/Patient/$validate", cpts.patient("A")),
    ("POST", "/Patient/A/$validate", cpts.patient("A")),
    ("GET", "/AuditEvent", None),
]


@pytest.mark.parametrize("with_token", [False, True], ids=["no-token", "bad-token"])
def test_every_fhir_route_needs_a_token(
    with_token: bool, anonymous: httpx.Client, auditor: httpx.Client
) -> None:
    before = expect(auditor.get("/AuditEvent", params={"_summary": "count"}), 200)["total"]
    if with_token:  # signed by another key
        anonymous.headers["authorization"] = "Bearer " + jwt.encode(
            {"sub": "x", "iss": "cpts-fhir-local", "aud": "cpts-fhir", "exp": 2**40},
            "not-the-server-key-but-long-enough-for-hs256",
        )
    for method, path, body in FHIR_ROUTES:
        content = None if body is None else json.dumps(body)
        content_type = (
            "application/json-patch+json" if method == "PATCH" else "application/fhir+json"
        )
        if path.endswith("_search"):
            content, content_type = "name=x", "application/x-www-form-urlencoded"
        response = anonymous.request(
            method, path, content=content, headers={"content-type": content_type}
        )
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers["www-authenticate"].startswith('Bearer realm="cpts-fhir"')
        assert response.json()["resourceType"] == "OperationOutcome"
    after = expect(auditor.get("/AuditEvent", params={"_summary": "count"}), 200)["total"]
    assert after == before + 1 + len(FHIR_ROUTES)  # the auditor's first count, and each 401
    failures = audit_events(auditor, type="http://dicom.nema.org/resources/ontology/DCM|110114")
    assert len(failures) == len(FHIR_ROUTES)
    for event in failures:
        assert (event["action"], event["outcome"]) == ("E", "4")
        assert event["agent"][0]["network"]["address"] == "127.0.0.1"
        assert "who" not in event["agent"][0] or "reference" not in event["agent"][0]["who"]
        AuditEvent.model_validate(event)


def test_discovery_is_public_and_declares_smart_on_fhir(anonymous: httpx.Client) -> None:
    statement = expect(anonymous.get("/metadata"), 200)
    (rest,) = statement["rest"]
    services = [c for s in rest["security"]["service"] for c in s["coding"]]
    assert {
        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
        "code": "SMART-on-FHIR",
    } in [{k: c[k] for k in ("system", "code")} for c in services]
    (audit,) = [r for r in rest["resource"] if r["type"] == "AuditEvent"]
    assert {i["code"] for i in audit["interaction"]}.isdisjoint({"create", "update", "delete"})
    configuration = expect(anonymous.get("/.well-known/smart-configuration"), 200)
    assert configuration["token_endpoint"].endswith("/auth/token")
