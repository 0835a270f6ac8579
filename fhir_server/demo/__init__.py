"""Demo data for the embedded default: a small CPTS (professionals, patients, a care team,
a hospital stay and nurse tasks) loaded as one transaction of PUTs, so loading twice changes
nothing."""

from __future__ import annotations

import json
from pathlib import Path

from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.server import Server

DEMO_BUNDLE = Path(__file__).with_name("cpts-demo.json")


def load_demo(server: Server) -> int:
    """Load the demo Bundle; returns how many entries it holds."""
    bundle = json.loads(DEMO_BUNDLE.read_text(encoding="utf-8"))
    server.engine.execute(Interaction(Kind.TRANSACTION, resource=bundle), Context(source="demo"))
    return len(bundle["entry"])
