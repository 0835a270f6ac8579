"""Command line: `python -m fhir_server serve|migrate|...`; later packages add commands through
the `fhir_server.cli` entry points."""

from __future__ import annotations

import logging

import typer

from fhir_server.plugins import CLI_GROUP, registrations
from fhir_server.security.principal import ROLES
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


@app.command()
def token(
    role: list[str] = typer.Option(None, "--role", help="A role (repeatable): " + ", ".join(ROLES)),
    practitioner: str | None = typer.Option(
        None, help="The user: Practitioner/123 (or 123), or PractitionerRole/..."
    ),
    patient: str | None = typer.Option(None, help="Launch context: the patient's id."),
    client: str | None = typer.Option(None, help="A system client id: a token without user."),
    scope: str | None = typer.Option(
        None,
        help="SMART scopes; default system/*.cruds with --client, patient/*.rs with --patient, "
        "else user/*.cruds (the roles still limit what is allowed).",
    ),
    lifetime: int | None = typer.Option(
        None, min=1, help="Seconds; default FHIR_AUTH_TOKEN_LIFETIME."
    ),
) -> None:
    """Print a bearer token signed with the server's local key (FHIR_AUTH_LOCAL_KEY), which a
    server with the same settings accepts: `TOKEN=$(python -m fhir_server token ...)`."""
    from fhir_server.security.tokens import LocalIssuer, NotIssuer, patient_id

    if client is not None and (practitioner is not None or patient is not None):
        raise typer.BadParameter("a --client token has no --practitioner nor --patient")
    if client is None and practitioner is None and patient is None:
        raise typer.BadParameter("name the user (--practitioner), --patient or --client")
    fhir_user = None
    if practitioner is not None:
        fhir_user = practitioner if "/" in practitioner else f"Practitioner/{practitioner}"
        if not fhir_user.startswith(("Practitioner/", "PractitionerRole/")):
            raise typer.BadParameter("not a Practitioner", param_hint="--practitioner")
    launch = None if patient is None else patient_id(patient)
    if patient is not None and launch is None:
        raise typer.BadParameter("not a Patient id", param_hint="--patient")
    if scope is None:
        scope = "system/*.cruds" if client else "patient/*.rs" if patient else "user/*.cruds"
    try:
        typer.echo(
            LocalIssuer(get_settings()).issue(
                subject=client or fhir_user or f"Patient/{launch}",
                roles=role or [],
                scope=scope,
                fhir_user=fhir_user,
                patient=launch,
                client_id=client,
                lifetime=lifetime,
            )
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    except NotIssuer as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None


@app.command("client-secret")
def client_secret() -> None:
    """Print a new random client secret, and the secret_hash to store in FHIR_AUTH_CLIENTS."""
    import secrets

    from fhir_server.security.clients import hash_secret

    secret = secrets.token_urlsafe(32)
    typer.echo(f"secret: {secret}")
    typer.echo(f"secret_hash: {hash_secret(secret)}")


for register in registrations(CLI_GROUP):
    register(app)
