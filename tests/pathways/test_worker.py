"""`python -m fhir_server worker`, the production home of after-commit work, started as users
start it, against the test database (SQLite file, PostgreSQL): it handles the events committed
before it started (an admission notifies the care team) and sweeps deadlines on its schedule,
then stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from fhir_server.server import Server
from tests.pathways.builders import careplan, created, read, task
from tests.pathways.test_triggers import TEAM, bundle, care_team, stay
from tests.rest.resources import patient

ROOT = Path(__file__).resolve().parents[2]


def test_the_worker_handles_pending_events_and_sweeps_deadlines(
    api: httpx.Client, server: Server, tmp_path: Path
) -> None:
    other = {"reference": "Patient/pat-2"}  # another patient: the admission holds nothing
    created(
        api,
        patient(id="pat-1"),
        care_team(),
        stay("enc-1", "in-progress", "2026-11-24T08:00:00+01:00"),
        {**careplan("cp-2"), "subject": other},
        {
            **task("late", "cp-2"),
            "for": other,
            "restriction": {"period": {"end": "2026-01-05T23:59:59+01:00"}},
        },
    )
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "fhir_server", "worker"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": server.settings.database_url,
            "FHIR_DEADLINE_SWEEP_SECONDS": "1",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            notices = bundle(api, "Communication", encounter="Encounter/enc-1")
            overdue = read(api, "Task", "late").get("businessStatus")
            if len(notices) == len(TEAM) and overdue:
                break
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.5)
        assert overdue["coding"][0]["code"] == "overdue"
        assert len(bundle(api, "Task", focus="Task/late")) == 1
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
        log.close()
    assert code == 0, (tmp_path / "worker.log").read_text()
