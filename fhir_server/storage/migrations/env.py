"""Alembic environment: migrations run on the connection handed over by `storage.migrate`."""

from alembic import context

from fhir_server.storage.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
context.run_migrations()
