"""Entry point `fhir_server.plugins`: the HL7 v2 door's part of the server's background work,
the journal retention (every hour, from when the process starts its background work: the API
process, the `mllp` listener, a worker)."""

from __future__ import annotations

from adapters.hl7v2 import retention
from adapters.hl7v2.settings import Hl7v2Settings
from fhir_server.server import Server

RETENTION_JOB = "hl7v2 journal retention"
RETENTION_EVERY = 3600.0


def register(server: Server) -> None:
    days = Hl7v2Settings().retention_days
    if days > 0:
        server.add_periodic_job(
            RETENTION_JOB, RETENTION_EVERY, lambda: retention.purge(server, days)
        )
