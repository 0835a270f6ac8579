"""Command line: `python -m fhir_server serve|migrate|...`; later packages add commands through
the `fhir_server.cli` entry points."""

from __future__ import annotations

import logging

import typer

from fhir_server.plugins import CLI_GROUP, registrations
from fhir_server.settings import get_settings

app = typer.Typer(help="CPTS FHIR server", no_args_is_help=True)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8080, help="TCP port."),
    workers: int = typer.Option(1, help="Worker processes (PostgreSQL only beyond 1)."),
    demo: bool = typer.Option(False, help="Load the demo CPTS data first (idempotent)."),
) -> None:
    """Start the FHIR REST API (migrating the database first)."""
    import uvicorn

    if demo:
        from fhir_server.demo import load_demo
        from fhir_server.server import Server

        server = Server(get_settings(), load_plugins=False)
        typer.echo(f"demo data: {load_demo(server)} resources loaded")
        server.close()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # uvicorn's own access log prints URLs, whose ids and search parameters are patient data;
    # fhir_server.access logs route templates instead.
    uvicorn.run(
        "fhir_server.rest.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        proxy_headers=True,
        access_log=False,
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


@app.command()
def reindex(
    type_: list[str] = typer.Option(None, "--type", help="Only these resource types."),
) -> None:
    """Rebuild the search index of the stored resources (after a SearchParameter change)."""
    from rich.progress import Progress

    from fhir_server.search.reindex import count_resources
    from fhir_server.search.reindex import reindex as rebuild
    from fhir_server.server import Server

    server = Server(get_settings(), load_plugins=False)
    with Progress() as progress:
        task = progress.add_task("reindexing", total=count_resources(server, type_ or None))
        total = rebuild(server, type_ or None, progress=lambda n: progress.advance(task, n))
    server.close()
    typer.echo(f"{total} resources reindexed")


for register in registrations(CLI_GROUP):
    register(app)
