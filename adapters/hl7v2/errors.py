"""Why a message is refused, in the terms of an HL7 ACK: the error code of HL7 table 0357
(ERR-3), where the problem is (ERR-2, an ERL) and a text for the integration team (ERR-8)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ErrorCode(IntEnum):
    """HL7 table 0357, message error condition codes."""

    SEGMENT_SEQUENCE = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT_CODE = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION_ID = 203
    UNKNOWN_KEY = 204
    DUPLICATE_KEY = 205
    RECORD_LOCKED = 206
    INTERNAL_ERROR = 207

    @property
    def text(self) -> str:
        """The text HL7 gives the code."""
        return _TEXTS[self]


_TEXTS = {
    ErrorCode.SEGMENT_SEQUENCE: "Segment sequence error",
    ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCode.DATA_TYPE: "Data type error",
    ErrorCode.TABLE_VALUE_NOT_FOUND: "Table value not found",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCode.UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    ErrorCode.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    ErrorCode.UNSUPPORTED_VERSION_ID: "Unsupported version id",
    ErrorCode.UNKNOWN_KEY: "Unknown key identifier",
    ErrorCode.DUPLICATE_KEY: "Duplicate key identifier",
    ErrorCode.RECORD_LOCKED: "Application record locked",
    ErrorCode.INTERNAL_ERROR: "Application internal error",
}


# Codes that say the receiver does not take this kind of message at all: answered AR.
REJECTING = frozenset(
    {
        ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
        ErrorCode.UNSUPPORTED_EVENT_CODE,
        ErrorCode.UNSUPPORTED_PROCESSING_ID,
        ErrorCode.UNSUPPORTED_VERSION_ID,
    }
)


@dataclass(frozen=True, slots=True)
class Location:
    """An ERL: segment id, its sequence among segments of that name (1-based), field,
    component. Zero means "not given"."""

    segment: str
    sequence: int = 1
    field: int = 0
    component: int = 0

    def er7(self, component: str) -> str:
        parts = [self.segment, str(self.sequence)]
        if self.field:
            parts += [str(self.field), "1"]
            if self.component:
                parts.append(str(self.component))
        return component.join(parts)


class MessageError(Exception):
    """A message the door refuses: answered AE, or AR for the codes in REJECTING and when
    `rejects` says so (a message this receiver cannot take at all), and nothing of it
    stored."""

    def __init__(
        self,
        code: ErrorCode,
        text: str,
        location: Location | None = None,
        rejects: bool = False,
    ) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.location = location
        self.rejects = rejects or code in REJECTING
