"""The ACK of a message (HL7 v2 original mode acknowledgment).

MSH mirrors the message: its receiver (MSH-5/6, or the configured application and facility)
sends the ACK to its sender (MSH-3/4), with the message's processing id, version, country,
character set and language; MSH-9 is ACK^<event>^ACK. MSA-1 is AA (stored), AE (content
refused, nothing stored) or AR (a message this receiver does not take); MSA-2 the message's
control id. A refusal adds ERR: where (ERR-2), the HL7 error code (ERR-3, table 0357), the
severity (ERR-4) and a text for the integration team (ERR-8). Encoded in the character set of
MSH-18.
"""

from __future__ import annotations

import uuid
from datetime import datetime, tzinfo

from adapters.hl7v2.er7 import Header, Separators
from adapters.hl7v2.errors import MessageError
from adapters.hl7v2.settings import Hl7v2Settings

ACCEPT, ERROR, REJECT = "AA", "AE", "AR"
_MAX_TEXT = 2000


def escape(text: str, separators: Separators) -> str:
    """Text as an ER7 value: separators and the escape character escaped, lines as \\.br\\."""
    e = separators.escape
    text = text.replace(e, f"{e}E{e}")
    for character, code in (
        (separators.field, "F"),
        (separators.component, "S"),
        (separators.subcomponent, "T"),
        (separators.repetition, "R"),
    ):
        text = text.replace(character, f"{e}{code}{e}")
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", f"{e}.br{e}")


def acknowledgment(
    header: Header | None,
    code: str,
    settings: Hl7v2Settings,
    zone: tzinfo,
    error: MessageError | None = None,
) -> bytes:
    """The ACK of a message (of unreadable bytes when `header` is None)."""
    s = header.separators if header else Separators()
    encoding_characters = s.component + s.repetition + s.escape + s.subcomponent

    def raw(position: int) -> str:
        return header.raw(position) if header else ""

    event = header.value(9, 2) if header else ""
    msh = [
        "MSH",
        encoding_characters,
        escape(settings.ack_application, s) or raw(5),
        escape(settings.ack_facility, s) or raw(6),
        raw(3),
        raw(4),
        datetime.now(zone).strftime("%Y%m%d%H%M%S%z"),
        "",
        s.component.join(["ACK", event, "ACK"]) if event else "ACK",
        uuid.uuid4().hex[:20],
        raw(11) or "P",
        raw(12) or "2.5",
        "",
        "",
        "",
        "",
        raw(17),
        raw(18),
        raw(19),
    ]
    segments = [
        s.field.join(msh).rstrip(s.field),
        s.field.join(["MSA", code, raw(10)]),
    ]
    if error is not None:
        location = error.location.er7(s.component) if error.location else ""
        error_code = s.component.join([str(int(error.code)), error.code.text, "HL70357"])
        text = escape(error.text[:_MAX_TEXT], s)
        segments.append(s.field.join(["ERR", "", location, error_code, "E", "", "", "", text]))
    encoding = header.encoding if header else "utf-8"
    return ("\r".join(segments) + "\r").encode(encoding, errors="replace")
