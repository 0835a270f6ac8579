"""The receiving side of the HL7 v2 door, whatever carries the bytes (MLLP, HTTP): one message
in, its ACK out.

1. The header is read from the bytes; without an MSH the answer is an AR that names the
   problem (there is no control id to echo).
2. hl7apy parses the message (outside any transaction); an unsupported type, event, version
   or character set is answered AR, an unparseable message AE.
3. In ONE unit of work: the journal is looked up by (sender MSH-3/4, control id MSH-10): the
   same message received again gets the ACK it got then and changes nothing; another message
   under a control id already accepted is refused (AE 205). Otherwise the message becomes
   FHIR interactions run by the engine, and is journaled with its AA, in the same commit.
4. A refusal (AE/AR) rolls back everything the message did; the message is journaled with
   its ACK in a transaction of its own. Sent again, it is processed again.

Logs carry the message type, the outcome and the error code, never a field of the message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.exc import DBAPIError

from adapters.hl7v2 import DOOR, documents, encounters
from adapters.hl7v2.ack import ACCEPT, ERROR, REJECT, acknowledgment
from adapters.hl7v2.er7 import Header, Message, digest, parse, read_header
from adapters.hl7v2.errors import ErrorCode, Location, MessageError
from adapters.hl7v2.identifiers import Authorities, parse_authorities
from adapters.hl7v2.settings import Hl7v2Settings
from adapters.hl7v2.translation import Interactions, Translation
from fhir_server.engine.interaction import Context
from fhir_server.engine.unit_of_work import UnitOfWork
from fhir_server.engine.versioning import now
from fhir_server.errors import FhirError
from fhir_server.security.principal import HOSPITAL, Principal
from fhir_server.security.scopes import Scopes
from fhir_server.server import Server
from fhir_server.storage import journal

log = logging.getLogger(__name__)

Handler = Callable[[Translation], None]
HANDLERS: dict[tuple[str, str], Handler] = {
    **{("ADT", event): encounters.movements_message for event in encounters.MOVEMENT_MESSAGES},
    ("ADT", "A08"): encounters.update_message,
    ("ADT", "A40"): encounters.merge_message,
    **{("MDM", event): documents.document_message for event in ("T02", "T04", "T10")},
}
PROCESSING_IDS = frozenset({"P", "T", "D"})  # production, training, debugging
_SEGMENTS = {
    "Patient": "PID",
    "Encounter": "PV1",
    "Condition": "DG1",
    "DocumentReference": "TXA",
    "Practitioner": "PRT",
    "Organization": "MSH",
}


def door_principal(settings: Hl7v2Settings) -> Principal:
    """Who sends over MLLP (no tokens there): the hospital system the listener serves, as a
    system client; its TLS client certificate, when required, is what authenticates it."""
    return Principal(
        subject=settings.client_id,
        roles=frozenset({HOSPITAL}),
        scopes=Scopes.parse("system/*.cruds"),
        client_id=settings.client_id,
    )


class Receiver:
    """Turns HL7 v2 messages into FHIR through a server's engine, one unit of work each."""

    def __init__(self, server: Server, settings: Hl7v2Settings | None = None) -> None:
        self.server = server
        self.settings = settings or Hl7v2Settings()
        self.zone = ZoneInfo(server.settings.timezone)
        self.authorities = Authorities(parse_authorities(self.settings.authorities))
        base_url = server.settings.base_url or Context.base_url
        door = door_principal(self.settings) if server.settings.security_enabled else None
        self.context = Context(base_url=base_url, source=DOOR, principal=door)

    def receive(self, raw: bytes, principal: Principal | None = None) -> bytes:
        """The ACK of one message (the bytes between the MLLP frame, or an HTTP body), sent by
        `principal` (an HTTP caller), else by the door's own client (MLLP)."""
        started, received_at = time.perf_counter(), now()
        context = replace(self.context, principal=principal or self.context.principal)
        header = read_header(raw)
        if header is None:
            error = MessageError(
                ErrorCode.SEGMENT_SEQUENCE,
                "The message does not start with an MSH segment",
                Location("MSH"),
            )
            ack = acknowledgment(None, REJECT, self.settings, self.zone, error)
            self.server.engine.in_transaction(
                True,
                context,
                lambda uow: journal.record(
                    uow.conn, DOOR, "", None, received_at, "", raw, ack, journal.REJECTED
                ),
            )
            log.warning("hl7v2 unreadable message rejected (no MSH)")
            return ack
        try:
            message = parse(header)
            handler = self._handler(message)
            ack, outcome = self.server.engine.in_transaction(
                True,
                context,
                lambda uow: self._process(uow, context, message, handler, raw, received_at),
            )
        except MessageError as error:
            ack, outcome = self._refuse(context, header, raw, received_at, error)
        except FhirError as error:
            ack, outcome = self._refuse(context, header, raw, received_at, _from_fhir(error))
        except DBAPIError:
            raise  # the database is unavailable: no ACK, the sender will send again
        except Exception as exc:  # the type and the place of the failure, never the message
            log.error(
                "hl7v2 %s failed: %s",
                header.message_type,
                type(exc).__name__,
                exc_info=(type(exc), None, exc.__traceback__),
            )
            error = MessageError(ErrorCode.INTERNAL_ERROR, "Internal error of the receiver")
            ack, outcome = self._refuse(context, header, raw, received_at, error)
        log.info(
            "hl7v2 %s %s in %.1f ms",
            header.message_type or "?",
            outcome,
            (time.perf_counter() - started) * 1000,
        )
        return ack

    def _handler(self, message: Message) -> Handler:
        processing = message.header.value(11).upper()
        if processing not in PROCESSING_IDS:
            raise MessageError(
                ErrorCode.UNSUPPORTED_PROCESSING_ID,
                f"Processing id {processing or '(none)'} (MSH-11) is not P, T or D",
                Location("MSH", 1, 11),
            )
        code, event = message.code.upper(), message.event.upper()
        handler = HANDLERS.get((code, event))
        if handler is not None:
            return handler
        events = sorted(e for c, e in HANDLERS if c == code)
        if events:
            raise MessageError(
                ErrorCode.UNSUPPORTED_EVENT_CODE,
                f"{code}^{event} is not supported; {code} events taken: " + ", ".join(events),
                Location("MSH", 1, 9, 2),
            )
        raise MessageError(
            ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            f"Message type {code or '(none)'} is not supported: ADT (IHE PAM France) and MDM "
            "(CI-SIS) are",
            Location("MSH", 1, 9, 1),
        )

    def _process(
        self,
        uow: UnitOfWork,
        context: Context,
        message: Message,
        handler: Handler,
        raw: bytes,
        received_at: datetime,
    ) -> tuple[bytes, str]:
        header = message.header
        earlier = self._earlier(uow, header, raw)
        if earlier is not None:
            return earlier, "answered again"
        handler(
            Translation(
                message,
                Interactions(self.server.engine, uow, context),
                self.authorities,
                self.zone,
            )
        )
        ack = acknowledgment(header, ACCEPT, self.settings, self.zone)
        _journal(uow, header, raw, received_at, ack, journal.ACCEPTED)
        return ack, journal.ACCEPTED

    def _earlier(self, uow: UnitOfWork, header: Header, raw: bytes) -> bytes | None:
        """The ACK already given to this message if it was accepted before; a MessageError
        when its control id was accepted for another message."""
        if header.control_id is None:
            return None
        entry = journal.find(uow.conn, DOOR, header.sender, header.control_id)
        if entry is None or entry.outcome != journal.ACCEPTED:
            return None
        if digest(entry.raw) == digest(raw):
            return entry.response
        raise MessageError(
            ErrorCode.DUPLICATE_KEY,
            f"Control id {header.control_id} (MSH-10) was already used by another message from "
            "this sender: a message needs a control id of its own",
            Location("MSH", 1, 10),
        )

    def _refuse(
        self,
        context: Context,
        header: Header,
        raw: bytes,
        received_at: datetime,
        error: MessageError,
    ) -> tuple[bytes, str]:
        outcome = journal.REJECTED if error.rejects else journal.ERROR
        ack = acknowledgment(
            header, REJECT if error.rejects else ERROR, self.settings, self.zone, error
        )

        def work(uow: UnitOfWork) -> bytes:
            try:
                earlier = self._earlier(uow, header, raw)
            except MessageError:  # an accepted message keeps its entry
                return ack
            if earlier is not None:
                return earlier
            _journal(uow, header, raw, received_at, ack, outcome)
            return ack

        log.info("hl7v2 %s refused: HL7 error %d", header.message_type or "?", error.code)
        return self.server.engine.in_transaction(True, context, work), outcome

    def replay(self, since: datetime, outcomes: frozenset[str]) -> dict[str, int]:
        """Receive again the journaled messages of the given outcomes since `since` (after the
        cause of a refusal was fixed): accepted ones are answered from the journal and change
        nothing. Returns how many messages got each ACK code."""
        entries = self.server.engine.in_transaction(
            False, self.context, lambda uow: journal.entries(uow.conn, DOOR, since, outcomes)
        )
        counts: dict[str, int] = {}
        for entry in entries:
            ack = self.receive(entry.raw)
            code = _ack_code(ack)
            counts[code] = counts.get(code, 0) + 1
        return counts


def _ack_code(ack: bytes) -> str:
    """MSA-1 of an ACK."""
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA"):
            return segment[4:6].decode("ascii", errors="replace")
    return "?"


def _journal(
    uow: UnitOfWork, header: Header, raw: bytes, received_at: datetime, ack: bytes, outcome: str
) -> None:
    """The journal entry of a message with a readable header, and the ACK it got."""
    journal.record(
        uow.conn,
        DOOR,
        header.sender,
        header.control_id,
        received_at,
        header.message_type,
        raw,
        ack,
        outcome,
    )


def _from_fhir(error: FhirError) -> MessageError:
    """An engine refusal as an HL7 error: the FHIR problems as text, at the segment of the
    resource they are about."""
    codes = {404: ErrorCode.UNKNOWN_KEY, 409: ErrorCode.RECORD_LOCKED, 412: ErrorCode.DUPLICATE_KEY}
    code = codes.get(error.status, ErrorCode.INTERNAL_ERROR)
    parts = []
    segment = None
    for issue in error.issues:
        if issue.severity not in ("error", "fatal"):
            continue
        resource_type = (issue.expression or "").split(".")[0].split("[")[0]
        segment = segment or _SEGMENTS.get(resource_type)
        where = f"{issue.expression}: " if issue.expression else ""
        parts.append(where + issue.diagnostics)
    text = f"Refused by the FHIR server ({error.status}): " + "; ".join(parts or [str(error)])
    return MessageError(code, text, Location(segment) if segment else None)
