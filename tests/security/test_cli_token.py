"""`python -m fhir_server token` prints one token, alone on stdout, that a server reading the
same settings (the same local key) accepts; `client-secret` prints a secret and its hash."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fhir_server.security.clients import SecretHash
from fhir_server.security.tokens import TokenVerifier
from fhir_server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("FHIR_AUTH_")  # the test's settings only
    }
    env["FHIR_AUTH_LOCAL_KEY"] = str(tmp_path / "keys" / "signing.pem")
    env.update(settings)
    return subprocess.run(
        [sys.executable, "-m", "fhir_server", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def verifier(tmp_path: Path) -> TokenVerifier:
    return TokenVerifier(Settings(auth_local_key=tmp_path / "keys" / "signing.pem"))


def test_practitioner_token_is_accepted_by_the_same_settings(tmp_path: Path) -> None:
    done = run(
        tmp_path, "token", "--role", "idel", "--role", "gp", "--practitioner", "Practitioner/123"
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert done.stdout == token + "\n"  # the token alone: TOKEN=$(python -m fhir_server token)
    principal = verifier(tmp_path).verify(token)
    assert principal.fhir_user == "Practitioner/123"
    assert principal.subject == "Practitioner/123"
    assert principal.roles == {"idel", "gp"}
    assert principal.scopes.text == "user/*.cruds"
    assert principal.patient is None
    key = tmp_path / "keys" / "signing.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_bare_practitioner_id_patient_context_and_lifetime(tmp_path: Path) -> None:
    done = run(
        tmp_path,
        "token",
        "--role",
        "pharmacist",
        "--practitioner",
        "ph-1",
        "--patient",
        "pat-9",
        "--lifetime",
        "60",
    )
    assert done.returncode == 0, done.stderr
    principal = verifier(tmp_path).verify(done.stdout.strip())
    assert principal.fhir_user == "Practitioner/ph-1"
    assert principal.patient == "pat-9"
    assert principal.scopes.text == "patient/*.rs"


def test_client_token_is_a_system_token(tmp_path: Path) -> None:
    done = run(tmp_path, "token", "--role", "coordinator", "--client", "robot")
    assert done.returncode == 0, done.stderr
    principal = verifier(tmp_path).verify(done.stdout.strip())
    assert principal.is_system
    assert principal.client_id == principal.subject == "robot"
    assert principal.scopes.text == "system/*.cruds"
    explicit = run(tmp_path, "token", "--client", "robot", "--scope", "system/Task.rs")
    assert verifier(tmp_path).verify(explicit.stdout.strip()).scopes.text == "system/Task.rs"


@pytest.mark.parametrize(
    "args",
    [
        ["--role", "surgeon", "--practitioner", "1"],
        ["--role", "gp"],
        ["--client", "robot", "--practitioner", "1"],
        ["--practitioner", "Patient/1"],
        ["--patient", "a b"],
        ["--practitioner", "1", "--lifetime", "0"],
    ],
)
def test_wrong_options_print_no_token(tmp_path: Path, args: list[str]) -> None:
    done = run(tmp_path, "token", *args)
    assert done.returncode != 0
    assert done.stdout == ""


def test_external_issuer_refuses_to_issue(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    done = run(tmp_path, "token", "--practitioner", "1", FHIR_AUTH_JWKS=str(jwks))
    assert done.returncode == 1
    assert done.stdout == ""
    assert "issues no tokens" in done.stderr
    assert not (tmp_path / "keys").exists()


def test_client_secret_prints_a_secret_and_its_hash(tmp_path: Path) -> None:
    done = run(tmp_path, "client-secret")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    secret = SecretHash.parse(lines["secret_hash"])
    assert secret.matches(lines["secret"])
    assert not secret.matches(lines["secret"] + "x")
