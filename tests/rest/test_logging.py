"""No patient data in logs: the access log names routes, never URLs or bodies."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.rest.resources import INS, JSON, patient


def test_access_log_has_no_patient_data(
    fhir: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = fhir.post(
        "/Patient", json=patient(family="Zébulon", ins="279035121518989"), headers=JSON
    ).json()
    fhir.get("/Patient", params={"identifier": f"{INS}|279035121518989", "family": "Zébulon"})
    fhir.put(f"/Patient/{created['id']}", json={**created, "birthDate": "bad"}, headers=JSON)
    access = [r.getMessage() for r in caplog.records if r.name == "fhir_server.access"]
    assert "POST /{type} Patient 201" in " ".join(access)
    assert "GET /{type} Patient 200" in " ".join(access)
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    everything = " ".join(r.getMessage() for r in server_side)
    for secret in ("279035121518989", "Zébulon", "Z%C3%A9bulon", created["id"], "bad"):
        assert secret not in everything
