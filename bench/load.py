"""Load a generated CPTS into a server's database through the engine (the bulk path: the same
interactions as the REST API, a transaction per batch, without HTTP).

    python -m bench.load --scale 100k --database-url sqlite:///bench/data/100k.db
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from bench.generate import Generator, Scale, parse_scale
from fhir_server.engine.interaction import Context, Interaction, Kind
from fhir_server.engine.unit_of_work import UnitOfWork
from fhir_server.server import Server
from fhir_server.settings import Settings

CONTEXT = Context(source="bench-load")


def load(server: Server, scale: Scale, batch: int = 1000, show: bool = True) -> dict[str, Any]:
    """Create every generated resource; returns the count and the rate achieved."""
    resources = Generator(scale).resources()
    started, total = time.perf_counter(), 0
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not show,
    ) as progress:
        task = progress.add_task("loading", total=scale.resources)
        while chunk := list(itertools.islice(resources, batch)):
            server.engine.in_transaction(
                True, CONTEXT, lambda uow, c=chunk: _create(server, uow, c)
            )
            total += len(chunk)
            progress.advance(task, len(chunk))
    seconds = time.perf_counter() - started
    return {
        "resources": total,
        "seconds": round(seconds, 1),
        "per_second": round(total / seconds, 1),
    }


def _create(server: Server, uow: UnitOfWork, chunk: list[dict[str, Any]]) -> None:
    for resource in chunk:
        server.engine.run(
            uow,
            Interaction(Kind.CREATE, resource["resourceType"], resource["id"], resource=resource),
            CONTEXT,
        )


def main(
    scale: str = typer.Option("10k", help="1k, 100k, 1m ..."),
    database_url: str = typer.Option(..., help="Target database (empty)."),
    batch: int = typer.Option(1000, help="Resources per transaction."),
) -> None:
    server = Server(Settings(database_url=database_url), load_plugins=False)
    stats = load(server, parse_scale(scale), batch)
    server.close()
    typer.echo(stats)


if __name__ == "__main__":
    typer.run(main)
