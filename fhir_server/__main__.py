from fhir_server.cli import app

app(prog_name="python -m fhir_server")
