"""Hidden data does not come out by any side door of the search and the REST API
(docs/security.md, "What is never leaked"): includes, chains, `_has`, counts and totals,
history and vread, compartment and server-wide searches, conditional writes and references,
version checks, batch and transaction entries, operations on a stored resource, and data
that names its patient other than by a local `Patient/id`. Each test shows the visible data
coming out, and the hidden not.

The caller is mostly the GP `gp-1`, who cares for A and not for B, C or D. Some of A's data
points at C's (the hospital's `bridge` Observation: `hasMember` obs-C, `focus` Patient C),
and obs-C points at `obs-free`, an Observation about no patient that everybody may see: what
is reached only through C's data must stay hidden."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.security import cpts
from tests.security.conftest import AsRole, assert_forbidden, expect, ids

HIDDEN_MARKS = (cpts.note_mark("C"), cpts.FAMILY["C"], cpts.note_mark("B"), cpts.FAMILY["B"])


@pytest.fixture
def bridged(hospital: httpx.Client) -> httpx.Client:
    """A's `bridge` Observation pointing at C's data, which points at `obs-free`."""
    free = cpts.observation("obs-free", "A")
    del free["subject"], free["note"]
    expect(hospital.put("/Observation/obs-free", json=free), 201)
    member = cpts.observation(
        "obs-C", "C", cpts.OUTSIDER, hasMember=[cpts.ref("Observation/obs-free")]
    )
    expect(hospital.put("/Observation/obs-C", json=member), 200)
    bridge = cpts.observation(
        "bridge",
        "A",
        hasMember=[cpts.ref("Observation/obs-C")],
        focus=[cpts.ref("Patient/C")],
    )
    expect(hospital.put("/Observation/bridge", json=bridge), 201)
    return hospital


def shows_nothing_hidden(response: httpx.Response) -> None:
    """No hidden patient's name or note in the answer (its links echo the query: not read)."""
    answer = response.json()
    answer.pop("link", None)
    text = json.dumps(answer, ensure_ascii=False)
    for mark in HIDDEN_MARKS:
        assert mark not in text, f"{mark} leaked in {response.request.url}"


def test_includes_bring_only_what_the_caller_sees(as_role: AsRole, bridged: httpx.Client) -> None:
    gp = as_role("gp")
    cases: list[tuple[dict[str, str], set[str], set[str]]] = [
        # (query, what the GP gets, what only the hospital gets besides)
        (
            {"_id": "bridge", "_include": "Observation:has-member"},
            {"Observation/bridge"},
            {"Observation/obs-C"},
        ),
        (
            {"_id": "bridge", "_include": "Observation:focus"},
            {"Observation/bridge"},
            {"Patient/C"},
        ),
        (
            {"_id": "bridge", "_include:iterate": "Observation:has-member"},
            {"Observation/bridge"},
            {"Observation/obs-C", "Observation/obs-free"},
        ),
        (
            {
                "_id": "bridge",
                "_include": "Observation:has-member",
                "_include:iterate": "Observation:subject",
            },
            {"Observation/bridge", "Patient/A"},
            {"Observation/obs-C", "Patient/C"},
        ),
        (
            {"_id": "obs-free", "_revinclude": "Observation:has-member"},
            {"Observation/obs-free"},
            {"Observation/obs-C"},
        ),
        (
            {"_id": "A", "_revinclude": "Observation:subject"},
            {"Patient/A", "Observation/obs-A", "Observation/bridge"},
            set(),
        ),
    ]
    for params, visible, hidden in cases:
        type_ = "Patient" if params["_id"] == "A" else "Observation"
        response = gp.get(f"/{type_}", params=params)
        assert ids(response) == visible, params
        shows_nothing_hidden(response)
        assert ids(bridged.get(f"/{type_}", params=params)) == visible | hidden, params

    # The directory includes patient data only as far as the caller sees it.
    params = {"_id": "idel-1,idel-2", "_revinclude": "Observation:performer"}
    response = gp.get("/Practitioner", params=params)
    assert ids(response) == {"Practitioner/idel-1", "Practitioner/idel-2", "Observation/obs-A"}
    shows_nothing_hidden(response)
    assert "Observation/obs-C" in ids(bridged.get("/Practitioner", params=params))


def test_chains_and_has_look_only_at_what_the_caller_sees(
    as_role: AsRole, bridged: httpx.Client
) -> None:
    gp, pharmacist = as_role("gp"), as_role("pharmacist")
    carpentier, arnaud = cpts.FAMILY["C"], cpts.FAMILY["A"]
    probes: list[tuple[str, dict[str, str], set[str], set[str]]] = [
        # (type, query, what the GP gets, what the hospital gets)
        ("Observation", {"subject:Patient.name": carpentier}, set(), {"Observation/obs-C"}),
        (
            "Observation",
            {"subject:Patient.name": arnaud},
            {"Observation/obs-A", "Observation/bridge"},
            {"Observation/obs-A", "Observation/bridge"},
        ),
        # bridge is the GP's, but its focus (C) is not: C's name must not select it.
        ("Observation", {"focus:Patient.name": carpentier}, set(), {"Observation/bridge"}),
        ("Observation", {"has-member.subject": "Patient/C"}, set(), {"Observation/bridge"}),
        (
            "Task",
            {"patient.identifier": f"{cpts.IPP_SYSTEM}|IPP-C"},
            set(),
            {"Task/task-C"},
        ),
        (
            "Task",
            {"patient.identifier": f"{cpts.IPP_SYSTEM}|IPP-A"},
            {"Task/task-A"},
            {"Task/task-A"},
        ),
        ("Patient", {"_has:Observation:subject:code": "29463-7"}, {"Patient/A"}, set()),
        # Practitioners are seen by all: who treats C must not be told by C's data.
        (
            "Practitioner",
            {"_has:Observation:performer:subject": "Patient/C"},
            set(),
            {"Practitioner/idel-2"},
        ),
        (
            "Practitioner",
            {"_has:Observation:performer:subject": "Patient/A"},
            {"Practitioner/idel-1"},
            {"Practitioner/idel-1"},
        ),
        (
            "Practitioner",
            {"_has:Task:owner:patient": "Patient/B"},
            set(),
            {"Practitioner/pharm-1"},
        ),
    ]
    for type_, params, visible, everything in probes:
        response = gp.get(f"/{type_}", params=params)
        assert ids(response) == visible, (type_, params)
        shows_nothing_hidden(response)
        if type_ != "Patient":
            assert ids(bridged.get(f"/{type_}", params=params)) == everything, (type_, params)
    # The pharmacist, who owns B's task, is told.
    assert ids(
        pharmacist.get("/Practitioner", params={"_has:Task:owner:patient": "Patient/B"})
    ) == {"Practitioner/pharm-1"}


def test_counts_and_totals_count_only_what_the_caller_sees(
    as_role: AsRole, bridged: httpx.Client
) -> None:
    gp = as_role("gp")
    everyone = len(ids(bridged.get("/Observation", params={"_count": "100"})))
    assert everyone == 6  # four patients', the bridge and obs-free
    visible = {"Observation/obs-A", "Observation/bridge", "Observation/obs-free"}
    assert ids(gp.get("/Observation", params={"_count": "100"})) == visible

    for client, expected in ((gp, len(visible)), (bridged, everyone)):
        count = expect(client.get("/Observation", params={"_summary": "count"}), 200)
        assert count["total"] == expected
        assert expect(client.get("/Observation", params={"_count": "0"}), 200)["total"] == expected
        for total in ("accurate", "estimate"):
            page = expect(client.get("/Observation", params={"_count": "1", "_total": total}), 200)
            assert len(page["entry"]) == 1
            if client is gp or total == "accurate":  # the hospital's estimate is the planner's
                assert page["total"] == expected, (total, page.get("total"))
    assert expect(gp.get("/Patient", params={"_summary": "count"}), 200)["total"] == 1

    # Paging through the GP's results never reaches past what they see.
    seen: set[str] = set()
    response = gp.get("/Observation", params={"_count": "1"})
    while True:
        page = expect(response, 200)
        seen |= {f"Observation/{e['resource']['id']}" for e in page.get("entry", [])}
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            break
        response = gp.get(following[0])
    assert seen == visible


def test_history_and_versions_of_hidden_resources_are_refused(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    gp = as_role("gp")
    amended = cpts.observation("obs-A", "A", cpts.PRACTITIONER["idel"]) | {"status": "amended"}
    expect(hospital.put("/Observation/obs-A", json=amended), 200)
    history = expect(gp.get("/Observation/obs-A/_history"), 200)
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    expect(gp.get("/Observation/obs-A/_history/1"), 200)

    for path in (
        "/Observation/obs-C/_history",
        "/Observation/obs-C/_history/1",
        "/Patient/C/_history",
        "/Patient/C/_history/1",
        "/Observation/_history",
        "/Patient/_history",
        "/_history",
    ):
        response = gp.get(path)
        assert_forbidden(response)
        shows_nothing_hidden(response)
    # The hospital, bound by no relation, reads the history of a type.
    assert "Observation/obs-C" in {
        f"Observation/{e['resource']['id']}"
        for e in expect(hospital.get("/Observation/_history"), 200)["entry"]
    }


def test_a_version_written_about_a_hidden_patient_stays_hidden(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    """An Observation filed on C by mistake, then moved to A by the hospital: its first
    version is C's data, which the GP of A may not read."""
    misfiled = cpts.observation("misfiled", "C")
    expect(hospital.put("/Observation/misfiled", json=misfiled), 201)
    expect(hospital.put("/Observation/misfiled", json=cpts.observation("misfiled", "A")), 200)
    gp = as_role("gp")
    expect(gp.get("/Observation/misfiled"), 200)
    expect(gp.get("/Observation/misfiled/_history/2"), 200)
    history = gp.get("/Observation/misfiled/_history")
    shows_nothing_hidden(history)
    assert_forbidden(gp.get("/Observation/misfiled/_history/1"))


def test_compartment_and_server_wide_searches_hold_only_what_the_caller_sees(
    as_role: AsRole, bridged: httpx.Client
) -> None:
    gp = as_role("gp")
    response = gp.get("/Patient/C/Observation")
    assert response.status_code in (200, 403)
    if response.status_code == 200:
        assert ids(response) == set()
    shows_nothing_hidden(response)
    assert ids(gp.get("/Patient/A/Observation")) == {"Observation/obs-A", "Observation/bridge"}
    assert "Observation/obs-C" in ids(bridged.get("/Patient/C/Observation"))

    params = {"_type": "Observation,Patient", "_count": "100"}
    response = gp.get("/", params=params)
    assert ids(response) == {
        "Patient/A",
        "Observation/obs-A",
        "Observation/bridge",
        "Observation/obs-free",
    }
    shows_nothing_hidden(response)
    assert {"Patient/C", "Observation/obs-C"} <= ids(bridged.get("/", params=params))
    assert_forbidden(gp.get("/"))  # every type, AuditEvent included: no role searches all
    assert_forbidden(bridged.get("/"))
    assert_forbidden(gp.get("/", params={"_type": "Observation,AuditEvent"}))


def test_conditional_writes_match_only_what_the_caller_sees(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    twin = {"identifier": [{"system": cpts.OBSERVATION_SYSTEM, "value": "twin"}]}
    expect(hospital.put("/Observation/twin-C", json=cpts.observation("twin-C", "C") | twin), 201)
    gp = as_role("gp")
    hidden = f"{cpts.OBSERVATION_SYSTEM}|obs-C"
    body = cpts.observation("x", "A")
    del body["id"]

    # Conditional create: the hidden match is no match, nothing of it is returned.
    response = gp.post("/Observation", json=body, headers={"if-none-exist": f"identifier={hidden}"})
    created = expect(response, 201)
    assert created["id"] != "obs-C"
    shows_nothing_hidden(response)

    # Conditional update: a hidden match is no match (a new resource); with a visible and a
    # hidden one, the visible is the only match (no 412 telling of the hidden one).
    response = gp.put("/Observation", params={"identifier": hidden}, json=body)
    assert expect(response, 201)["id"] != "obs-C"
    expect(hospital.put("/Observation/twin-A", json=cpts.observation("twin-A", "A") | twin), 201)
    response = gp.put(
        "/Observation",
        params={"identifier": f"{cpts.OBSERVATION_SYSTEM}|twin"},
        json=cpts.observation("twin-A", "A") | twin | {"status": "amended"},
    )
    assert expect(response, 200)["id"] == "twin-A"

    # Conditional patch: no visible match.
    patch = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    response = gp.patch(
        "/Observation",
        params={"identifier": hidden},
        content=json.dumps(patch),
        headers={"content-type": "application/json-patch+json"},
    )
    assert response.status_code == 404, response.text
    # Conditional delete: nobody deletes patient data.
    assert_forbidden(gp.delete("/Observation", params={"identifier": hidden}))
    assert_forbidden(as_role("admin").delete("/Observation", params={"identifier": hidden}))

    for id_ in ("obs-C", "twin-C"):
        stored = expect(hospital.get(f"/Observation/{id_}"), 200)
        assert stored["meta"]["versionId"] == "1" and stored["status"] == "final"


def entry_statuses(bundle: dict[str, Any]) -> list[int]:
    return [int(e["response"]["status"].split()[0]) for e in bundle["entry"]]


def test_batch_entries_are_each_decided_as_if_sent_alone(as_role: AsRole) -> None:
    gp = as_role("gp")
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Patient/A"}},
            {"request": {"method": "GET", "url": "Patient/C"}},
            {"request": {"method": "GET", "url": "Observation?subject=Patient/C"}},
            {"request": {"method": "GET", "url": "Observation/obs-C/_history/1"}},
            {
                "resource": cpts.condition("x", "C"),
                "request": {"method": "POST", "url": "Condition"},
            },
            {
                "resource": cpts.condition("x", "A"),
                "request": {"method": "POST", "url": "Condition"},
            },
        ],
    }
    response = gp.post("/", json=batch)
    answer = expect(response, 200)
    assert entry_statuses(answer) == [200, 403, 200, 403, 403, 201]
    for index in (1, 3, 4):
        issues = answer["entry"][index]["response"]["outcome"]["issue"]
        assert [issue["code"] for issue in issues] == ["forbidden"]
    assert answer["entry"][2]["resource"].get("entry", []) == []
    shows_nothing_hidden(response)


def test_a_transaction_with_one_forbidden_entry_changes_nothing(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    gp = as_role("gp")
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": cpts.condition("tx-A", "A"),
                "request": {"method": "PUT", "url": "Condition/tx-A"},
            },
            {
                "resource": cpts.observation("obs-A", "A") | {"status": "amended"},
                "request": {"method": "PUT", "url": "Observation/obs-A"},
            },
            {
                "resource": cpts.condition("tx-C", "C"),
                "request": {"method": "PUT", "url": "Condition/tx-C"},
            },
        ],
    }
    assert_forbidden(gp.post("/", json=transaction))
    for path in ("/Condition/tx-A", "/Condition/tx-C"):
        assert hospital.get(path).status_code == 404
    assert expect(hospital.get("/Observation/obs-A"), 200)["meta"]["versionId"] == "1"
    # Without the forbidden entry, the same transaction goes through.
    transaction["entry"].pop()
    expect(gp.post("/", json=transaction), 200)
    expect(hospital.get("/Condition/tx-A"), 200)


def test_an_operation_on_a_hidden_resource_is_refused(as_role: AsRole) -> None:
    """`$validate` of a stored resource reads it: a hidden one is refused as a read would be,
    not validated (nor told apart from a missing one by its answer)."""
    gp = as_role("gp")
    expect(gp.post("/Observation/obs-A/$validate"), 200)
    assert_forbidden(gp.post("/Observation/obs-C/$validate"))
    assert_forbidden(gp.get("/Observation/obs-C/$validate", params={"mode": "delete"}))


def test_conditional_references_resolve_within_what_the_caller_sees(as_role: AsRole) -> None:
    """A transaction's `Patient?identifier=...` reference finds the GP's patient; a hidden
    patient's identifier is answered as an unknown one, so that it cannot be probed."""
    gp = as_role("gp")

    def post_about(identifier: str) -> httpx.Response:
        observation = cpts.observation("x", "A")
        del observation["id"]
        observation["subject"] = cpts.ref(f"Patient?identifier={cpts.IPP_SYSTEM}|{identifier}")
        entry = {"resource": observation, "request": {"method": "POST", "url": "Observation"}}
        return gp.post(
            "/", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        )

    expect(post_about("IPP-A"), 200)
    unknown, hidden = post_about("IPP-UNKNOWN"), post_about("IPP-C")
    assert unknown.status_code == 412
    assert (hidden.status_code, hidden.json()["issue"][0]["code"]) == (
        unknown.status_code,
        unknown.json()["issue"][0]["code"],
    )


def test_data_naming_its_patient_by_url_or_identifier_is_not_open_to_all(
    secure_live: LiveServer, as_role: AsRole, hospital: httpx.Client
) -> None:
    """An Observation about D whose subject is the absolute URL of Patient/D on this server,
    or D's identifier alone: it is D's data, not data about nobody."""
    by_url = cpts.observation("by-url", "D", subject=cpts.ref(f"{secure_live.url}/Patient/D"))
    by_identifier = cpts.observation(
        "by-identifier", "D", subject={"identifier": {"system": cpts.IPP_SYSTEM, "value": "IPP-D"}}
    )
    for observation in (by_url, by_identifier):
        expect(hospital.put(f"/Observation/{observation['id']}", json=observation), 201)
    outsider = as_role("idel", cpts.OUTSIDER)
    for id_ in ("by-url", "by-identifier"):
        assert_forbidden(outsider.get(f"/Observation/{id_}"))
    assert ids(outsider.get("/Observation")) == set()


def test_a_version_check_on_a_hidden_resource_tells_nothing(as_role: AsRole) -> None:
    """An update or patch of a hidden resource with a wrong If-Match is refused as any other
    write of it: a 412 would tell that it exists and how many times it changed."""
    idel = as_role("idel")
    stale = {"if-match": 'W/"7"'}
    patch = json.dumps([{"op": "replace", "path": "/status", "value": "amended"}])
    for response in (
        idel.put("/Observation/obs-C", json=cpts.observation("obs-C", "C"), headers=stale),
        idel.patch(
            "/Observation/obs-C",
            content=patch,
            headers={**stale, "content-type": "application/json-patch+json"},
        ),
    ):
        assert_forbidden(response)


def test_sorted_pages_are_full_and_in_order_around_hidden_data(
    as_role: AsRole, hospital: httpx.Client
) -> None:
    """What the caller may not see is judged on the sorted candidates (docs/search.md): the
    hidden ones, sorting first and between the visible ones, take no place on a page, and
    paging forwards and backwards walks the visible ones in order."""
    dated = {
        "early-C": ("C", "2026-01-01"),
        "mid-A-1": ("A", "2026-02-01"),
        "mid-C": ("C", "2026-02-15"),
        "mid-A-2": ("A", "2026-03-01"),
        "late-B": ("B", "2026-03-15"),
        "late-A": ("A", "2026-04-01"),
    }
    for id_, (patient, day) in dated.items():
        body = cpts.observation(id_, patient, effectiveDateTime=day)
        expect(hospital.put(f"/Observation/{id_}", json=body), 201)
    gp = as_role("gp")
    mine = ["mid-A-1", "mid-A-2", "late-A"]  # obs-A, undated, sorts last
    query = {"code": "29463-7", "_sort": "date", "_count": "2"}

    pages: list[list[str]] = []
    response = gp.get("/Observation", params=query)
    while True:
        page = expect(response, 200)
        pages.append([e["resource"]["id"] for e in page.get("entry", [])])
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            break
        response = gp.get(following[0])
    assert pages == [mine[:2], [mine[2], "obs-A"]]

    previous = [link["url"] for link in page["link"] if link["relation"] == "previous"]
    response = gp.get(previous[0])
    assert [e["resource"]["id"] for e in expect(response, 200)["entry"]] == mine[:2]
    shows_nothing_hidden(response)
