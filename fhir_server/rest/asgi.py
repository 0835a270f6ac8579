"""ASGI entry point for uvicorn/gunicorn: `fhir_server.rest.asgi:app`, configured from the
environment."""

from fhir_server.rest.app import create_app

app = create_app()
