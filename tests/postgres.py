"""A throwaway PostgreSQL for the test session.

FHIR_TEST_POSTGRES_URL points the tests at an existing server; otherwise the PostgreSQL
binaries of the machine (`initdb` on PATH or under /usr/lib/postgresql/*/bin) start a private
cluster in a temporary directory, as the `postgres` user when running as root (initdb refuses
root). Without either, PostgreSQL tests skip — or fail when FHIR_REQUIRE_POSTGRES=1 (CI).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


def _bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if not candidates:
        raise PostgresUnavailable("no PostgreSQL binaries (initdb) on this machine")
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Yield the SQLAlchemy URL of a fresh database on a private cluster, removed afterwards."""
    url = os.environ.get("FHIR_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="fhir-pg-"))
    as_root = os.geteuid() == 0
    if as_root:
        shutil.chown(root, "postgres")
        root.chmod(0o700)
    data, port = root / "data", _free_port()

    def run(*args: str) -> None:
        command = [str(bin_dir / args[0]), *args[1:]]
        if as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=root)
        if result.returncode != 0:
            raise PostgresUnavailable(f"{args[0]} failed: {result.stderr.strip()[-500:]}")

    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
    run("pg_ctl", "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
    try:
        run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "fhir_test")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/fhir_test"
    finally:
        run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
