"""The floor of the CRUD benchmarks: a bare ASGI application that does, for the same requests,
only what any JSON-over-HTTP service must do. It reads the body, parses and serialises the JSON,
and runs one statement on one table per resource in one database transaction. It runs under
the same HTTP server (uvicorn, one process), on the same database, through the same driver
and connection settings (`fhir_server.storage.database.Database`) as the FHIR server. The
difference between the two is what the FHIR server adds: validation, versions, search index,
outbox, history, FHIR semantics.

    DATABASE_URL=... uvicorn bench.floor:app

Routes, mirroring the FHIR ones the benchmarks call: `POST /{type}` (201), `GET /{type}/{id}`,
`PUT /{type}/{id}`, `POST /` with a Bundle (every entry inserted in one transaction).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import anyio
import orjson
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, insert, select, update
from starlette.types import Receive, Scope, Send

from fhir_server.storage.database import Database

metadata = MetaData()
floor_resource = Table(
    "bench_floor_resource",
    metadata,
    Column("type", String(64), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
)

_JSON = [(b"content-type", b"application/fhir+json")]


class Floor:
    def __init__(self, database_url: str) -> None:
        self.database = Database(database_url)
        metadata.create_all(self.database.engine)

    def create(self, type_: str, body: bytes) -> bytes:
        resource = orjson.loads(body)
        resource["id"] = str(uuid.uuid4())
        stored = orjson.dumps(resource)
        with self.database.transaction(write=True) as conn:
            conn.execute(
                insert(floor_resource).values(type=type_, id=resource["id"], version=1, body=stored)
            )
        return stored

    def read(self, type_: str, id_: str) -> bytes | None:
        with self.database.transaction(write=False) as conn:
            return conn.execute(
                select(floor_resource.c.body).where(
                    floor_resource.c.type == type_, floor_resource.c.id == id_
                )
            ).scalar()

    def update(self, type_: str, id_: str, body: bytes) -> bytes | None:
        stored = orjson.dumps(orjson.loads(body))
        with self.database.transaction(write=True) as conn:
            changed = conn.execute(
                update(floor_resource)
                .where(floor_resource.c.type == type_, floor_resource.c.id == id_)
                .values(version=floor_resource.c.version + 1, body=stored)
            ).rowcount
        return stored if changed else None

    def bundle(self, body: bytes) -> bytes:
        rows = []
        for entry in orjson.loads(body).get("entry", []):
            rows.append(_row({**entry["resource"], "id": str(uuid.uuid4())}))
        with self.database.transaction(write=True) as conn:
            conn.execute(insert(floor_resource), rows)
        return orjson.dumps(
            {"resourceType": "Bundle", "type": "transaction-response", "entry": len(rows)}
        )

    def seed(self, resources: list[dict[str, Any]]) -> None:
        """Copy resources into the floor table (the same rows the reads will ask for)."""
        with self.database.transaction(write=True) as conn:
            conn.execute(insert(floor_resource), [_row(r) for r in resources])


def _row(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": resource["resourceType"],
        "id": resource["id"],
        "version": 1,
        "body": orjson.dumps(resource),
    }


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": body})


class FloorApp:
    """The ASGI callable; database calls run in worker threads, as FastAPI runs the FHIR
    server's synchronous endpoints."""

    def __init__(self) -> None:
        self.floor: Floor | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    self.floor = Floor(os.environ["DATABASE_URL"])
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        floor, method = self.floor, scope["method"]
        assert floor is not None
        parts = [p for p in scope["path"].split("/") if p]
        run = anyio.to_thread.run_sync
        if method == "GET" and parts == ["ready"]:
            await _respond(send, 200, b"{}")
        elif method == "POST" and not parts:
            await _respond(send, 200, await run(floor.bundle, await _body(receive)))
        elif method == "POST" and len(parts) == 1:
            await _respond(send, 201, await run(floor.create, parts[0], await _body(receive)))
        elif method == "GET" and len(parts) == 2:
            found = await run(floor.read, *parts)
            await _respond(send, 200 if found else 404, found or b"{}")
        elif method == "PUT" and len(parts) == 2:
            found = await run(floor.update, *parts, await _body(receive))
            await _respond(send, 200 if found else 404, found or b"{}")
        else:
            await _respond(send, 404, b"{}")


app = FloorApp()
