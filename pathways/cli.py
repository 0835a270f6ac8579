"""Commands of the pathway engine: `worker`, the production home of after-commit work."""

from __future__ import annotations

import logging
import signal
import threading

import typer

from fhir_server.server import Server
from fhir_server.settings import get_settings

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command()(worker)


def worker() -> None:
    """Dispatch outbox events (pathway triggers, progression, ...) and sweep deadlines until
    interrupted. Run one or more beside API processes started with FHIR_OUTBOX_IN_PROCESS=false:
    on PostgreSQL workers share the outbox (FOR UPDATE SKIP LOCKED) and take turns to sweep."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    server = Server(get_settings())
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: stopping.set())
    server.start_outbox_worker()
    log.info(
        "worker started: %d outbox consumers, %d periodic jobs",
        len(server.consumers),
        len(server.periodic_jobs),
    )
    while not stopping.wait(1.0):
        pass
    log.info("worker stopping")
    server.close()
