"""The search parameters are served at /SearchParameter, read-only, and every parameter the
CapabilityStatement declares is one of them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from fhir_server.conformance import load_conformance
from profiles import PROFILES_DIR
from tests.conftest import wipe
from tests.rest.resources import JSON


@pytest.fixture(scope="module")
def loaded(live) -> Iterator[httpx.Client]:
    """Loaded once per database for the module (it takes seconds); the tests only read."""
    wipe(live.server)
    # R4 base SearchParameters, and every resource of profiles/: the project's search
    # parameters, profiles, value sets, code systems and operation definitions
    assert load_conformance(live.server) == 1280 + len(list(PROFILES_DIR.glob("*-*/*.json")))
    assert load_conformance(live.server) == 0  # unchanged: nothing rewritten
    with httpx.Client(base_url=live.url, timeout=30) as client:
        yield client


def test_search_parameters_are_searchable(loaded: httpx.Client) -> None:
    due = loaded.get("/SearchParameter", params={"base": "Task", "code": "due-date"}).json()
    assert due["total"] == 1
    resource = due["entry"][0]["resource"]
    assert resource["url"] == "https://cpts-fhir.org/fhir/SearchParameter/Task-due-date"
    assert resource["expression"] == "Task.restriction.period.end"
    assert resource["type"] == "date"
    patient = loaded.get("/SearchParameter/clinical-patient").json()
    assert patient["code"] == "patient" and "Observation" in patient["base"]
    assert "Observation.subject.where(resolve() is Patient)" in patient["expression"]
    identifier = loaded.get("/SearchParameter/Resource-id").json()
    assert identifier["base"] == ["Resource"] and identifier["expression"] == "Resource.id"


def test_search_parameters_are_read_only(loaded: httpx.Client) -> None:
    current = loaded.get("/SearchParameter/Task-due-date").json()
    for response in (
        loaded.put(
            "/SearchParameter/Task-due-date", json={**current, "status": "retired"}, headers=JSON
        ),
        loaded.post("/SearchParameter", json={**current, "code": "x"}, headers=JSON),
        loaded.delete("/SearchParameter/Task-due-date"),
    ):
        assert response.status_code == 405, response.text
    assert loaded.get("/SearchParameter/Task-due-date").json()["meta"]["versionId"] == "1"


def test_capability_statement_declares_only_served_parameters(loaded: httpx.Client) -> None:
    statement = loaded.get("/metadata").json()["rest"][0]
    declared = {p["definition"] for r in statement["resource"] for p in r["searchParam"]}
    declared |= {p["definition"] for p in statement["searchParam"]}
    served = loaded.get("/SearchParameter", params={"_count": 500, "_elements": "url"}).json()
    urls = set()
    while True:
        urls |= {e["resource"]["url"] for e in served["entry"] if "url" in e["resource"]}
        following = [link["url"] for link in served["link"] if link["relation"] == "next"]
        if not following:
            break
        served = httpx.get(following[0]).json()
    assert declared == urls
    search_parameter = next(r for r in statement["resource"] if r["type"] == "SearchParameter")
    assert {i["code"] for i in search_parameter["interaction"]} == {
        "read",
        "vread",
        "history-instance",
        "history-type",
        "search-type",
    }
    task = next(r for r in statement["resource"] if r["type"] == "Task")
    assert {"due-date", "pathway"} <= {p["name"] for p in task["searchParam"]}
