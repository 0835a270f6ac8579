"""The re-index command rebuilds the search index from the stored resources."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import text

from fhir_server.search.reindex import reindex
from tests.rest.resources import INS, JSON, patient

ROOT = Path(__file__).resolve().parents[2]


def _found(fhir: httpx.Client) -> int:
    return fhir.get("/Patient", params={"identifier": f"{INS}|279035121518989"}).json()["total"]


def test_reindex_restores_lost_index_rows(fhir: httpx.Client, live) -> None:
    created = fhir.post("/Patient", json=patient(ins="279035121518989"), headers=JSON).json()
    fhir.post("/Patient", json=patient(ins="184127645108946"), headers=JSON)
    gone = fhir.post("/Patient", json=patient(ins="279035121518989"), headers=JSON).json()
    fhir.delete(f"/Patient/{gone['id']}")
    assert _found(fhir) == 1
    with live.server.database.transaction(write=True) as conn:
        conn.execute(text("DELETE FROM search_token"))
    assert _found(fhir) == 0
    counted: list[int] = []
    assert reindex(live.server, batch=1, progress=counted.append) == 2  # not the deleted one
    assert counted == [1, 1]
    found = fhir.get("/Patient", params={"identifier": f"{INS}|279035121518989"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [created["id"]]


def test_reindex_command(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"}
    result = subprocess.run(
        [sys.executable, "-m", "fhir_server", "reindex", "--type", "Patient"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "0 resources reindexed" in result.stdout
