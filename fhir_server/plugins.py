"""Extension points for the packages built on the server (`pathways`, `adapters`), found
through entry points so that `fhir_server` never imports them.

- group `fhir_server.plugins`: `register(server)` callables that add hooks, outbox consumers
  and operations to a `Server`;
- group `fhir_server.cli`: `register(app)` callables that add commands to the `typer` CLI;
- group `fhir_server.routes`: `register(app)` callables that add non-FHIR HTTP endpoints (an
  HL7 v2 door, for instance) to the FastAPI application.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any

PLUGIN_GROUP = "fhir_server.plugins"
CLI_GROUP = "fhir_server.cli"
ROUTES_GROUP = "fhir_server.routes"


def registrations(group: str) -> Iterator[Callable[[Any], None]]:
    for entry_point in sorted(entry_points(group=group), key=lambda e: e.name):
        yield entry_point.load()
