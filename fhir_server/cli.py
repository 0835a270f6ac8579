"""Command line: `python -m fhir_server serve|migrate|...`; later packages add commands through
the `fhir_server.cli` entry points."""

from __future__ import annotations

import typer

from fhir_server.plugins import CLI_GROUP, registrations
from fhir_server.settings import get_settings

app = typer.Typer(help="CPTS FHIR server", no_args_is_help=True)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8080, help="TCP port."),
    workers: int = typer.Option(1, help="Worker processes (PostgreSQL only beyond 1)."),
) -> None:
    """Start the FHIR REST API (migrating the database first)."""
    import uvicorn

    uvicorn.run(
        "fhir_server.rest.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        proxy_headers=True,
    )


@app.command()
def migrate(revision: str = typer.Argument("head", help="Alembic revision to reach.")) -> None:
    """Apply the schema migrations to DATABASE_URL."""
    from fhir_server.storage.database import Database
    from fhir_server.storage.migrate import current_revision, upgrade

    settings = get_settings()
    database = Database(settings.database_url)
    upgrade(database, revision)
    typer.echo(f"database at revision {current_revision(database)}")
    database.dispose()


for register in registrations(CLI_GROUP):
    register(app)
