"""Commands of the HL7 v2 door (entry point `fhir_server.cli`):

- `mllp [--host] [--port]`: the MLLP listener, on the database of DATABASE_URL (migrated first,
  as `serve` does), with the server's background work (outbox events, periodic jobs such as
  the journal retention) unless FHIR_OUTBOX_IN_PROCESS=false; stops on SIGINT/SIGTERM after
  the messages in progress;
- `hl7v2-replay --since DATE`: receive again the journaled messages that were refused (after
  the cause was fixed); accepted ones would only be answered from the journal.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

from fhir_server.settings import get_settings

if TYPE_CHECKING:
    from adapters.hl7v2.mllp import MllpServer


def register(app: typer.Typer) -> None:
    @app.command()
    def mllp(
        host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
        port: int = typer.Option(2575, help="TCP port (0: any free port)."),
    ) -> None:
        """Start the HL7 v2 MLLP listener (IHE PAM France ADT, CI-SIS MDM)."""
        from adapters.hl7v2.mllp import MllpServer
        from adapters.hl7v2.receiver import Receiver
        from fhir_server.server import Server

        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
        server = Server(get_settings())
        if server.settings.outbox_in_process:  # as the API process does
            server.start_outbox_worker()
        listener = MllpServer(Receiver(server), host, port)
        try:
            asyncio.run(_serve(listener))
        finally:
            server.close()

    @app.command("hl7v2-replay")
    def replay(
        since: datetime = typer.Option(..., help="Messages received since this time (UTC)."),
        outcome: list[str] = typer.Option(
            ["error", "rejected"], help="Journal outcomes to receive again."
        ),
    ) -> None:
        """Receive again the journaled HL7 v2 messages refused since a time."""
        from adapters.hl7v2.receiver import Receiver
        from fhir_server.server import Server

        server = Server(get_settings())
        when = since if since.tzinfo else since.replace(tzinfo=UTC)
        counts = Receiver(server).replay(when, frozenset(outcome))
        server.close()
        total = sum(counts.values())
        details = ", ".join(f"{code} {n}" for code, n in sorted(counts.items()))
        typer.echo(f"{total} messages received again" + (f": {details}" if details else ""))


async def _serve(listener: MllpServer) -> None:
    await listener.start()
    typer.echo(f"MLLP listening on {listener.host}:{listener.port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await listener.close()
