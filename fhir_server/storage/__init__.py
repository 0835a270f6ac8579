"""Persistence: SQLAlchemy schema, connections, the resource repository and migrations."""
