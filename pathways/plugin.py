"""Entry point `fhir_server.plugins`: installs the pathway engine on a server."""

from __future__ import annotations

from fhir_server.server import Server
from pathways import apply, catalogue, deadlines, lifecycle, measures, progression, triggers


def register(server: Server) -> None:
    catalogue.install(server)
    apply.install(server)
    lifecycle.install(server)
    progression.install(server)
    triggers.install(server)
    deadlines.install(server)
    measures.install(server)
