"""A FHIR client written elsewhere (fhirpy) against the live server: create, read, update,
delete, history and search as it understands the R4 API."""

from __future__ import annotations

import httpx
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from tests.rest.resources import INS, VALIDATED


@pytest.fixture
def client(fhir: httpx.Client, live) -> SyncFHIRClient:
    return SyncFHIRClient(live.url, extra_headers={"Accept": "application/fhir+json"})


def test_fhirpy_crud_and_history(client: SyncFHIRClient, live) -> None:
    patient = client.resource(
        "Patient",
        name=[{"family": "Lefèvre", "given": ["Anaïs"]}],
        identifier=[{"system": INS, "value": "279035121518989"}],
        extension=[VALIDATED],
        gender="female",
    )
    patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"

    fetched = client.reference("Patient", patient.id).to_resource()
    assert fetched["name"][0]["given"] == ["Anaïs"]

    fetched["birthDate"] = "1979-05-03"
    fetched.save()
    assert fetched["meta"]["versionId"] == "2"

    found = client.resources("Patient").search(identifier=f"{INS}|279035121518989").fetch_all()
    assert [p.id for p in found] == [patient.id]

    history = httpx.get(f"{live.url}/Patient/{patient.id}/_history").json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]

    fetched.delete()
    with pytest.raises(ResourceNotFound):
        client.reference("Patient", patient.id).to_resource()
    assert httpx.get(f"{live.url}/Patient/{patient.id}").status_code == 410


def test_fhirpy_paging_follows_next_links(client: SyncFHIRClient) -> None:
    for n in range(7):
        client.resource(
            "Practitioner",
            identifier=[{"system": "https://rpps.esante.gouv.fr", "value": f"1000000000{n}"}],
        ).save()
    everyone = client.resources("Practitioner").limit(3).fetch_all()
    assert sorted(p["identifier"][0]["value"] for p in everyone) == [
        f"1000000000{n}" for n in range(7)
    ]
