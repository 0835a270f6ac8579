"""The retention of the HL7 v2 journal: entries older than FHIR_HL7V2_RETENTION_DAYS are
forgotten, by a periodic job of the server's background work (`plugin.py`)."""

from __future__ import annotations

import logging
from datetime import timedelta

from adapters.hl7v2 import DOOR
from fhir_server.engine.interaction import Context
from fhir_server.engine.versioning import now
from fhir_server.server import Server
from fhir_server.storage import journal

log = logging.getLogger(__name__)


def purge(server: Server, days: int) -> int:
    """Forget the journal entries of the door received more than `days` ago."""
    before = now() - timedelta(days=days)
    purged = server.engine.in_transaction(
        True, Context(source=DOOR), lambda uow: journal.purge(uow.conn, DOOR, before)
    )
    if purged:
        log.info("hl7v2 journal: %d messages past their retention forgotten", purged)
    return purged
