"""Extension points for the packages built on the server (`pathways`, `adapters`), found
through entry points so that `fhir_server` never imports them.

- group `fhir_server.plugins`: `register(server)` callables that add hooks, outbox consumers
  and operations to a `Server`;
- group `fhir_server.cli`: `register(app)` callables that add commands to the `typer` CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any

PLUGIN_GROUP = "fhir_server.plugins"
CLI_GROUP = "fhir_server.cli"


def registrations(group: str) -> Iterator[Callable[[Any], None]]:
    for entry_point in sorted(entry_points(group=group), key=lambda e: e.name):
        yield entry_point.load()
