"""HTTP endpoint of the HL7 v2 door (entry point `fhir_server.routes`): `POST /hl7v2` with one
ER7 message as the body (any content type: application/hl7-v2, x-application/hl7-v2+er7,
text/plain), answered 200 with its ACK (application/hl7-v2, in the character set of the
message's MSH-18). AA, AE and AR are all in the ACK, as over MLLP; an empty or oversized body
is a 400 or 413 OperationOutcome."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from adapters.hl7v2.receiver import Receiver
from fhir_server.errors import FhirError, bad_request
from fhir_server.rest.authentication import principal
from fhir_server.rest.negotiation import read_body
from fhir_server.rest.threads import in_thread
from fhir_server.security.principal import HOSPITAL

PATH = "/hl7v2"
MEDIA_TYPE = "application/hl7-v2"


def receiver(request: Request) -> Receiver:
    """The receiver of the application's server, made on first use."""
    state = request.app.state
    if getattr(state, "hl7v2_receiver", None) is None:
        state.hl7v2_receiver = Receiver(state.server)
    return state.hl7v2_receiver


async def receive(request: Request) -> Response:
    caller = await principal(request)
    if caller is not None and HOSPITAL not in caller.roles:
        raise FhirError.of(403, "forbidden", "Only hospital systems send HL7 v2 messages")
    door = receiver(request)
    body = await read_body(request, door.settings.max_message_bytes)
    if not body.strip():
        raise bad_request("The body must be one HL7 v2 message (ER7)")
    ack = await in_thread(door.receive, body, caller)
    return Response(content=ack, media_type=MEDIA_TYPE)


def register(app: FastAPI) -> None:
    app.add_api_route(PATH, receive, methods=["POST"], include_in_schema=False)
    # Before the FHIR routes, whose POST /{type} would take /hl7v2 for a resource type.
    app.router.routes.insert(0, app.router.routes.pop())
