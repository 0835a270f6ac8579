"""create, read, vread, update, delete over real HTTP, on SQLite and PostgreSQL (http.html)."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import httpx

from tests.rest.resources import JSON, patient

IPP = "urn:oid:1.2.250.1.999.1"


def create(fhir: httpx.Client, resource: dict) -> httpx.Response:
    response = fhir.post(f"/{resource['resourceType']}", json=resource, headers=JSON)
    assert response.status_code == 201, response.text
    return response


def count(fhir: httpx.Client, type_: str) -> int:
    return fhir.get(f"/{type_}", params={"_summary": "count"}).json()["total"]


def test_create_assigns_id_version_and_headers(fhir: httpx.Client) -> None:
    response = create(fhir, patient(ins="279035121518989"))
    body = response.json()
    assert body["id"] and body["meta"]["versionId"] == "1"
    assert body["name"] == [{"family": "Dupont", "given": ["Hélène"]}]
    assert response.headers["etag"] == 'W/"1"'
    assert (
        response.headers["location"]
        == f"{str(fhir.base_url).rstrip('/')}/Patient/{body['id']}/_history/1"
    )
    assert response.headers["content-type"].startswith("application/fhir+json")
    modified = parsedate_to_datetime(response.headers["last-modified"])
    assert body["meta"]["lastUpdated"].startswith(modified.strftime("%Y-%m-%dT%H:%M:%S"))


def test_create_ignores_client_id_and_meta_version(fhir: httpx.Client) -> None:
    body = create(fhir, patient(id="mine", meta={"versionId": "7"})).json()
    assert body["id"] != "mine"
    assert body["meta"]["versionId"] == "1"


def test_read_returns_current_version(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    response = fhir.get(f"/Patient/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == 'W/"1"'
    assert "last-modified" in response.headers


def test_head_answers_a_read_without_its_body(fhir: httpx.Client) -> None:
    """HEAD is GET without the body (RFC 9110 §9.3.2): a client checks a version cheaply."""
    created = create(fhir, patient()).json()
    changed = {**created, "birthDate": "1961-02-03"}
    assert fhir.put(f"/Patient/{created['id']}", json=changed, headers=JSON).status_code == 200
    response = fhir.head(f"/Patient/{created['id']}")
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"2"'
    assert response.content == b""
    assert fhir.head("/Patient/nope").status_code == 404


def test_read_unknown_is_404_operation_outcome(fhir: httpx.Client) -> None:
    response = fhir.get("/Patient/nope")
    assert response.status_code == 404
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "not-found"


def test_unknown_resource_type_is_404(fhir: httpx.Client) -> None:
    for response in (
        fhir.get("/Unicorn/1"),
        fhir.post("/Unicorn", json={"resourceType": "Unicorn"}, headers=JSON),
        fhir.get("/Unicorn"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["resourceType"] == "OperationOutcome"


def test_update_creates_new_version(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    changed = {**created, "gender": "male"}
    response = fhir.put(f"/Patient/{created['id']}", json=changed, headers=JSON)
    assert response.status_code == 200
    body = response.json()
    assert body["meta"]["versionId"] == "2" and body["gender"] == "male"
    assert response.headers["etag"] == 'W/"2"'
    assert "location" not in response.headers
    assert fhir.get(f"/Patient/{created['id']}").json()["gender"] == "male"


def test_update_without_change_creates_no_version(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    same = {k: v for k, v in created.items() if k != "meta"}
    response = fhir.put(f"/Patient/{created['id']}", json=same, headers=JSON)
    assert response.status_code == 200
    assert response.json()["meta"] == created["meta"]
    assert response.headers["etag"] == 'W/"1"'
    history = fhir.get(f"/Patient/{created['id']}/_history").json()
    assert history["total"] == 1


def test_update_with_client_id_creates(fhir: httpx.Client) -> None:
    response = fhir.put(
        "/Patient/ins-279035121518989", json=patient(id="ins-279035121518989"), headers=JSON
    )
    assert response.status_code == 201
    assert response.headers["location"].endswith("/Patient/ins-279035121518989/_history/1")
    assert fhir.get("/Patient/ins-279035121518989").status_code == 200


def test_update_requires_matching_id(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    no_id = fhir.put(f"/Patient/{created['id']}", json=patient(), headers=JSON)
    other = fhir.put(f"/Patient/{created['id']}", json=patient(id="other"), headers=JSON)
    bad = fhir.put("/Patient/bad_id!", json=patient(id="bad_id!"), headers=JSON)
    assert (no_id.status_code, other.status_code, bad.status_code) == (400, 400, 400)
    assert fhir.get(f"/Patient/{created['id']}").json()["meta"]["versionId"] == "1"


def test_vread(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    fhir.put(f"/Patient/{created['id']}", json={**created, "gender": "male"}, headers=JSON)
    first = fhir.get(f"/Patient/{created['id']}/_history/1")
    second = fhir.get(f"/Patient/{created['id']}/_history/2")
    assert first.json()["gender"] == "female" and first.headers["etag"] == 'W/"1"'
    assert second.json()["gender"] == "male"
    assert fhir.get(f"/Patient/{created['id']}/_history/3").status_code == 404
    assert fhir.get(f"/Patient/{created['id']}/_history/x").status_code == 404


def test_delete_is_logical_then_gone(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    response = fhir.delete(f"/Patient/{created['id']}")
    assert response.status_code == 204
    assert response.headers["etag"] == 'W/"2"'
    gone = fhir.get(f"/Patient/{created['id']}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert fhir.get(f"/Patient/{created['id']}/_history/1").status_code == 200
    assert fhir.get(f"/Patient/{created['id']}/_history/2").status_code == 410
    assert count(fhir, "Patient") == 0
    # Deleting again, or something never created, changes nothing.
    assert fhir.delete(f"/Patient/{created['id']}").status_code == 204
    assert fhir.delete("/Patient/never").status_code == 204
    assert fhir.get(f"/Patient/{created['id']}/_history").json()["total"] == 2


def test_update_after_delete_resurrects_with_next_version(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    fhir.delete(f"/Patient/{created['id']}")
    response = fhir.put(f"/Patient/{created['id']}", json=patient(id=created["id"]), headers=JSON)
    assert response.status_code == 201
    assert response.json()["meta"]["versionId"] == "3"


def test_delete_prefer_operation_outcome(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    response = fhir.delete(
        f"/Patient/{created['id']}", headers={"prefer": "return=OperationOutcome"}
    )
    assert response.status_code == 200
    assert response.json()["resourceType"] == "OperationOutcome"


def test_if_match_on_update_patch_delete(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    url = f"/Patient/{created['id']}"
    ok = fhir.put(url, json={**created, "gender": "male"}, headers={**JSON, "if-match": 'W/"1"'})
    assert ok.status_code == 200
    stale_update = fhir.put(
        url, json={**created, "gender": "other"}, headers={**JSON, "if-match": 'W/"1"'}
    )
    stale_patch = fhir.patch(
        url,
        json=[{"op": "replace", "path": "/gender", "value": "other"}],
        headers={"content-type": "application/json-patch+json", "if-match": 'W/"1"'},
    )
    stale_delete = fhir.delete(url, headers={"if-match": 'W/"1"'})
    for response in (stale_update, stale_patch, stale_delete):
        assert response.status_code == 412, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    current = fhir.get(url)
    assert current.json()["gender"] == "male" and current.headers["etag"] == 'W/"2"'
    assert fhir.delete(url, headers={"if-match": 'W/"2"'}).status_code == 204


def test_conditional_read(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    url = f"/Patient/{created['id']}"
    assert fhir.get(url, headers={"if-none-match": 'W/"1"'}).status_code == 304
    assert fhir.get(url, headers={"if-none-match": 'W/"0"'}).status_code == 200
    modified = fhir.get(url).headers["last-modified"]
    assert fhir.get(url, headers={"if-modified-since": modified}).status_code == 304
    earlier = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert fhir.get(url, headers={"if-modified-since": earlier}).status_code == 200


def test_prefer_return(fhir: httpx.Client) -> None:
    minimal = fhir.post("/Patient", json=patient(), headers={**JSON, "prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["location"] and minimal.headers["etag"] == 'W/"1"'
    outcome = fhir.post(
        "/Patient", json=patient(), headers={**JSON, "prefer": "return=OperationOutcome"}
    )
    assert outcome.status_code == 201
    assert outcome.json()["resourceType"] == "OperationOutcome"
    full = fhir.post(
        "/Patient", json=patient(), headers={**JSON, "prefer": "return=representation"}
    )
    assert full.json()["resourceType"] == "Patient"


def test_malformed_json_is_400_and_stores_nothing(fhir: httpx.Client) -> None:
    response = fhir.post("/Patient", content=b'{"resourceType": "Patient", "name": [', headers=JSON)
    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "invalid"
    assert count(fhir, "Patient") == 0


def test_invalid_resource_reports_every_path(fhir: httpx.Client) -> None:
    bad = patient(active="yes", birthDate="1948-13-45", unknownThing=1)
    response = fhir.post("/Patient", json=bad, headers=JSON)
    assert response.status_code == 400
    paths = {issue["expression"][0] for issue in response.json()["issue"]}
    assert paths == {"Patient.active", "Patient.birthDate", "Patient.unknownThing"}
    assert count(fhir, "Patient") == 0


def test_resource_type_must_match_endpoint(fhir: httpx.Client) -> None:
    response = fhir.post("/Practitioner", json=patient(), headers=JSON)
    assert response.status_code == 400
    assert count(fhir, "Patient") == 0


def test_unsupported_media_type_is_415(fhir: httpx.Client) -> None:
    response = fhir.post(
        "/Patient", content=b"name=x", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 415
    assert response.json()["resourceType"] == "OperationOutcome"


def test_oversized_body_is_413(fhir: httpx.Client, live) -> None:
    limit = live.server.settings.max_body_bytes
    big = patient(name=[{"family": "x" * limit}])
    response = fhir.post("/Patient", json=big, headers=JSON)
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"

    def chunks():  # no Content-Length: the limit applies while streaming
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = fhir.post("/Patient", content=chunks(), headers=JSON)
    assert streamed.status_code == 413
    assert count(fhir, "Patient") == 0


def test_method_not_allowed_is_405(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    response = fhir.post(f"/Patient/{created['id']}", json=patient(), headers=JSON)
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"
    assert fhir.delete("/metadata").status_code == 405


def test_xml_in_and_out(fhir: httpx.Client) -> None:
    xml = (
        b'<Patient xmlns="http://hl7.org/fhir"><identifier><system value="'
        + IPP.encode()  # a local identifier: an INS needs a validated identity
        + b'"/><value value="IPP-4242"/></identifier><name><family value="Martin"/>'
        b'<given value="Z\xc3\xa9lie"/></name><birthDate value="1990-01-02"/></Patient>'
    )
    response = fhir.post(
        "/Patient",
        content=xml,
        headers={"content-type": "application/fhir+xml", "accept": "application/fhir+xml"},
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/fhir+xml")
    assert b'<given value="Z\xc3\xa9lie"/>' in response.content
    id_ = response.headers["location"].split("/")[-3]
    as_json = fhir.get(f"/Patient/{id_}").json()
    assert as_json["name"] == [{"family": "Martin", "given": ["Zélie"]}]
    as_xml = fhir.get(f"/Patient/{id_}", params={"_format": "xml"})
    assert as_xml.headers["content-type"].startswith("application/fhir+xml")
    assert as_xml.content.startswith(b"<?xml")
    assert fhir.get(f"/Patient/{id_}", params={"_format": "text/csv"}).status_code == 406


def test_malformed_xml_is_400(fhir: httpx.Client) -> None:
    response = fhir.post(
        "/Patient",
        content=b"<Patient xmlns='http://hl7.org/fhir'><name>",
        headers={"content-type": "application/fhir+xml"},
    )
    assert response.status_code == 400
    assert count(fhir, "Patient") == 0


def test_decimal_precision_is_kept(fhir: httpx.Client) -> None:
    observation = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"poids"},'
        b'"valueQuantity":{"value":71.50,"unit":"kg"}}'
    )
    response = fhir.post("/Observation", content=observation, headers=JSON)
    assert b'"value":71.50' in response.content
    id_ = response.json()["id"]
    assert b'"value":71.50' in fhir.get(f"/Observation/{id_}").content
    assert (
        b'<value value="71.50"/>'
        in fhir.get(f"/Observation/{id_}", params={"_format": "xml"}).content
    )


def test_pretty_json(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    pretty = fhir.get(f"/Patient/{created['id']}", params={"_pretty": "true"})
    assert pretty.text.startswith('{\n  "resourceType"')


def test_unknown_path_is_404_operation_outcome(fhir: httpx.Client) -> None:
    response = fhir.get("/Patient/1/_history/1/extra")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_narrative_must_be_an_xhtml_div(fhir: httpx.Client) -> None:
    for div in (
        "<p>no div</p>",
        "<div>no namespace</div>",
        "not xml",
        '<!DOCTYPE x [<!ENTITY e "boom">]><div xmlns="http://www.w3.org/1999/xhtml">&e;</div>',
    ):
        response = fhir.post(
            "/Patient", json=patient(text={"status": "generated", "div": div}), headers=JSON
        )
        assert response.status_code == 400, div
        assert response.json()["issue"][0]["expression"] == ["Patient.text.div"]
    good = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Mme <b>Dupont</b></p></div>'
    response = fhir.post(
        "/Patient", json=patient(text={"status": "generated", "div": good}), headers=JSON
    )
    assert response.status_code == 201
    assert response.json()["text"]["div"] == good
    assert count(fhir, "Patient") == 1
