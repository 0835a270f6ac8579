"""The README's first command: `python -m fhir_server serve --demo` starts the server on an
SQLite file with the demo data; and packages extend the server through entry points."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from importlib.metadata import EntryPoint
from pathlib import Path

import httpx
import pytest

from fhir_server import plugins
from fhir_server.engine.hooks import HookPoint
from fhir_server.server import Server
from fhir_server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_with_demo_data(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "FHIR_AUTH_LOCAL_KEY": str(tmp_path / "signing-key.pem"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "fhir_server", "serve", "--demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/metadata").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        # The README's tour: a token from the `token` command, for the demo's nurse
        token = subprocess.run(
            [
                *(sys.executable, "-m", "fhir_server", "token"),
                *("--role", "idel", "--practitioner", "Practitioner/idel-bernard"),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        nurse = {"authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/Task").status_code == 401
        tasks = httpx.get(
            f"{base}/Task", params={"owner": "Practitioner/idel-bernard"}, headers=nurse
        ).json()
        assert tasks["total"] == 1
        dupont = httpx.get(f"{base}/Patient/pat-dupont", headers=nurse).json()
        assert dupont["name"][0]["family"] == "Dupont"
        assert httpx.get(f"{base}/Patient/pat-leroy", headers=nurse).status_code == 403
        assert (tmp_path / "demo.db").exists()
    finally:
        process.terminate()
        process.wait(20)


def test_demo_data_loads_twice_without_change(tmp_path: Path) -> None:
    from fhir_server.demo import load_demo

    server = Server(
        Settings(database_url=f"sqlite:///{tmp_path / 'd.db'}"),
        load_plugins=False,
        load_conformance=False,
    )
    load_demo(server)
    load_demo(server)
    with server.database.transaction(write=False) as conn:
        versions = conn.exec_driver_sql("SELECT max(version) FROM resource").scalar()
    server.close()
    assert versions == 1


def register_test_plugin(server: Server) -> None:
    server.hooks.register(HookPoint.BEFORE_INTERACTION, lambda ctx, ix: None)
    server.plugin_loaded = True  # type: ignore[attr-defined]


def test_plugins_are_found_through_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = EntryPoint("test", f"{__name__}:register_test_plugin", plugins.PLUGIN_GROUP)
    monkeypatch.setattr(
        plugins, "entry_points", lambda group: [entry] if group == plugins.PLUGIN_GROUP else []
    )
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'p.db'}")
    bare = Server(settings, load_plugins=False, load_conformance=False)
    server = Server(settings, load_conformance=False)
    assert server.plugin_loaded  # type: ignore[attr-defined]
    hooks = server.hooks._hooks[HookPoint.BEFORE_INTERACTION]
    assert len(hooks) == len(bare.hooks._hooks[HookPoint.BEFORE_INTERACTION]) + 1
    server.close()
    bare.close()
