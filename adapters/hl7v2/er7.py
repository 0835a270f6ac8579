"""ER7, the pipe-and-hat encoding of HL7 v2, as hospital engines really send it.

- The header (MSH) is read from the raw bytes first: its separators, its control id and its
  character set (MSH-18) are needed to answer even a message that cannot be parsed.
- The text is decoded with the character set MSH-18 names (UNICODE UTF-8, 8859/1, 8859/15...);
  a message declared 8859/x whose bytes are valid UTF-8 is read as UTF-8 (a common mistake of
  engines), and one declaring nothing is read as UTF-8, else 8859/1.
- Segments may end with CR, LF or CRLF.
- hl7apy parses the message (versions 2.5 and 2.6), the French Z segments ZBE and ZFA and the
  pre-adopted PRT with typed fields (`segments.py`); fields are then read by position, with
  their repetitions, and unescaped: F S T R E, Xhh (bytes in the message's character set),
  .br as a line break; highlighting and character-set switches are dropped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from hl7apy.exceptions import ChildNotFound, HL7apyException, InvalidName
from hl7apy.parser import parse_message, parse_segment

from adapters.hl7v2.errors import ErrorCode, Location, MessageError
from adapters.hl7v2.segments import PRT_VERSION, Z_SEGMENTS, z_segment_reference

SUPPORTED_VERSIONS = ("2.5", "2.5.1", "2.6")
_CHARSETS = {
    "": None,  # nothing declared: UTF-8, else 8859/1
    "ASCII": None,  # declared but often not true: read like an undeclared message
    "8859/1": "latin-1",
    "8859/15": "iso-8859-15",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
}
_SEGMENT_END = re.compile(r"\r\n|\n|\r")
_INDEX = re.compile(r"_(\d+)$")


@dataclass(frozen=True)
class Separators:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @cached_property
    def escapes(self) -> re.Pattern[str]:
        e = re.escape(self.escape)
        return re.compile(f"{e}([^{e}]*){e}")


@dataclass
class Header:
    """MSH as read from the bytes, and the message decoded with its character set."""

    separators: Separators
    fields: list[str]  # raw MSH-1 .. MSH-n, index 0 is MSH-1
    charset: str  # MSH-18 as sent
    encoding: str  # the codec the message was read with, and the ACK is written with
    text: str  # the message, segments ending with CR
    supported_charset: bool

    def value(self, position: int, component: int = 1) -> str:
        """MSH-`position`, component `component`, unescaped."""
        raw = self.fields[position - 1] if position <= len(self.fields) else ""
        first = raw.split(self.separators.repetition)[0]
        parts = first.split(self.separators.component)
        return unescape(parts[component - 1], self) if component <= len(parts) else ""

    def raw(self, position: int) -> str:
        return self.fields[position - 1] if position <= len(self.fields) else ""

    @property
    def control_id(self) -> str | None:
        return self.value(10) or None

    @property
    def sender(self) -> str:
        """Who sent it, as the key of its control ids: MSH-3 and MSH-4 as sent."""
        return f"{self.raw(3)}{self.separators.field}{self.raw(4)}"

    @property
    def message_type(self) -> str:
        return f"{self.value(9, 1)}^{self.value(9, 2)}".strip("^")

    @property
    def version(self) -> str:
        return self.value(12)


def read_header(raw: bytes) -> Header | None:
    """The header of a message, or None when the bytes do not start with an MSH segment."""
    data = raw.lstrip(b"\x0b\x1c\r\n \t").removeprefix(b"\xef\xbb\xbf")
    if not data.startswith(b"MSH") or len(data) < 8:
        return None
    first = _SEGMENT_END.split(data.decode("latin-1"), maxsplit=1)[0]
    field_separator, encoding_characters = first[3], first[4:8]
    separators = Separators(field_separator, *encoding_characters)
    charset = first.split(field_separator)[17:18]
    declared = charset[0].split(separators.component)[0].strip() if charset else ""
    supported = declared.upper() in _CHARSETS
    text = _decode(data, _CHARSETS.get(declared.upper()))
    encoding = _CHARSETS.get(declared.upper()) or _guess(data)
    segments = [s for s in _SEGMENT_END.split(text.strip("\x0b\x1c\r\n")) if s.strip()]
    fields = segments[0].split(field_separator)
    return Header(
        separators=separators,
        fields=[field_separator, *fields[1:]],
        charset=declared,
        encoding=encoding,
        text="\r".join(segments),
        supported_charset=supported,
    )


def _guess(data: bytes) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def _decode(data: bytes, declared: str | None) -> str:
    if declared == "utf-8" or (declared != "utf-8" and not data.isascii()):
        try:
            return data.decode("utf-8")  # valid UTF-8 is never 8859/x text in practice
        except UnicodeDecodeError:
            pass
    return data.decode(declared if declared and declared != "utf-8" else "latin-1")


def digest(raw: bytes) -> bytes:
    """What makes two receptions the same message: its bytes with segment ends normalised and
    MSH-7 (the time of sending, which some engines renew when they send again) left out."""
    data = raw.strip(b"\x0b\x1c\r\n \t")
    segments = [s for s in re.split(rb"\r\n|\n|\r", data) if s.strip()]
    if segments and segments[0].startswith(b"MSH") and len(segments[0]) > 3:
        header = segments[0].split(segments[0][3:4])
        if len(header) > 6:
            header[6] = b""
        segments[0] = segments[0][3:4].join(header)
    return hashlib.sha256(b"\r".join(segments)).digest()


def unescape(value: str, header: Header) -> str:
    """The text of an ER7 value, escape sequences replaced (HL7 v2 chapter 2.7)."""
    s = header.separators
    if s.escape not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        simple = {
            "F": s.field,
            "S": s.component,
            "T": s.subcomponent,
            "R": s.repetition,
            "E": s.escape,
            ".br": "\n",
        }
        if code in simple:
            return simple[code]
        if code[:1] == "X" and re.fullmatch(r"X(?:[0-9A-Fa-f]{2})+", code):
            return bytes.fromhex(code[1:]).decode(header.encoding, errors="replace")
        return ""  # highlighting, character-set switches, local escapes, formatting

    return s.escapes.sub(replace, value)


class Field:
    """One repetition of a field: its components and subcomponents by position."""

    __slots__ = ("_components", "_header")

    def __init__(self, components: dict[int, dict[int, str]], header: Header) -> None:
        self._components = components
        self._header = header

    def __call__(self, component: int = 1, subcomponent: int = 1) -> str:
        """The unescaped, stripped text at this position ('' when absent)."""
        raw = self._components.get(component, {}).get(subcomponent, "")
        return unescape(raw, self._header).strip(" \t\u00a0")

    def __bool__(self) -> bool:
        return any(v for subs in self._components.values() for v in subs.values())


class Segment:
    """One segment: its fields by position, each a list of repetitions."""

    __slots__ = ("fields", "header", "name", "sequence")

    def __init__(
        self, name: str, sequence: int, fields: dict[int, list[Field]], header: Header
    ) -> None:
        self.name = name
        self.sequence = sequence  # 1 for the first segment of this name, 2 for the next...
        self.fields = fields
        self.header = header

    def repetitions(self, position: int) -> list[Field]:
        return [f for f in self.fields.get(position, []) if f]

    def field(self, position: int, repetition: int = 0) -> Field:
        found = self.fields.get(position, [])
        return found[repetition] if repetition < len(found) else Field({}, self.header)

    def __call__(self, position: int, component: int = 1, subcomponent: int = 1) -> str:
        return self.field(position)(component, subcomponent)

    def at(self, position: int = 0, component: int = 0) -> Location:
        return Location(self.name, self.sequence, position, component)


@dataclass
class Message:
    header: Header
    segments: list[Segment]

    @property
    def code(self) -> str:
        return self.header.value(9, 1)

    @property
    def event(self) -> str:
        return self.header.value(9, 2)

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def require(self, name: str) -> Segment:
        found = self.first(name)
        if found is None:
            raise MessageError(
                ErrorCode.SEGMENT_SEQUENCE,
                f"A {self.header.message_type} message needs a {name} segment",
                Location(name),
            )
        return found


def parse(header: Header) -> Message:
    """Parse a message with hl7apy; a MessageError says why it cannot be."""
    counts: dict[str, int] = {}
    segments = []
    for hl7apy_segment in hl7apy_segments(header):
        name = hl7apy_segment.name
        counts[name] = counts.get(name, 0) + 1
        segments.append(Segment(name, counts[name], _fields(hl7apy_segment, header), header))
    return Message(header, segments)


def hl7apy_segments(header: Header) -> list[Any]:
    """The segments of a message as hl7apy parses them: the standard ones in one
    `parse_message`, the French Z segments and the pre-adopted PRT one by one with their
    definitions (`segments.py`); in the order of the message."""
    if not header.supported_charset:
        raise MessageError(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            f"Character set {header.charset!r} (MSH-18) is not supported: "
            "use UNICODE UTF-8, 8859/1 or 8859/15",
            Location("MSH", 1, 18),
            rejects=True,
        )
    version = header.version
    if version not in SUPPORTED_VERSIONS:
        raise MessageError(
            ErrorCode.UNSUPPORTED_VERSION_ID,
            f"HL7 version {version or '(none)'} (MSH-12) is not supported: "
            f"{', '.join(SUPPORTED_VERSIONS)} are",
            Location("MSH", 1, 12),
        )
    lines = header.text.split("\r")
    separate = {i for i, line in enumerate(lines) if line[:3] in Z_SEGMENTS or line[:3] == "PRT"}
    encoding_chars = {
        "FIELD": header.separators.field,
        "COMPONENT": header.separators.component,
        "REPETITION": header.separators.repetition,
        "ESCAPE": header.separators.escape,
        "SUBCOMPONENT": header.separators.subcomponent,
        "GROUP": "\r",
        "SEGMENT": "\r",
    }
    try:
        standard = iter(
            parse_message(
                "\r".join(line for i, line in enumerate(lines) if i not in separate),
                find_groups=False,
            ).children
        )
        parsed = []
        for i, line in enumerate(lines):
            if i not in separate:
                parsed.append(next(standard))
            elif line[:3] == "PRT":
                parsed.append(parse_segment(line, PRT_VERSION, encoding_chars))
            else:
                reference = z_segment_reference(line[:3], _library_version(version))
                parsed.append(parse_segment(line, version, encoding_chars, None, reference))
    except (HL7apyException, ValueError, StopIteration) as exc:
        raise MessageError(
            ErrorCode.SEGMENT_SEQUENCE
            if isinstance(exc, InvalidName | ChildNotFound)
            else ErrorCode.DATA_TYPE,
            f"The message cannot be parsed: {type(exc).__name__}: {exc}",
        ) from None
    return parsed


def _library_version(version: str) -> str:
    return "2.5" if version == "2.5.1" else version


def _fields(segment: Any, header: Header) -> dict[int, list[Field]]:
    """Positional fields of an hl7apy segment, raw (still escaped) text at each leaf."""
    fields: dict[int, list[Field]] = {}
    for hl7apy_field in segment.children:
        position = _position(hl7apy_field.name, 0)
        if segment.name == "MSH" and position <= 2:
            continue
        components: dict[int, dict[int, str]] = {}
        for c_position, component in enumerate(hl7apy_field.children, 1):
            subs: dict[int, str] = {}
            if component.children:
                for s_position, sub in enumerate(component.children, 1):
                    subs[_position(sub.name, s_position)] = _leaf(sub)
            else:
                subs[1] = _leaf(component)
            components[_position(component.name, c_position)] = subs
        fields.setdefault(position, []).append(Field(components, header))
    return fields


def _position(name: str | None, default: int) -> int:
    match = _INDEX.search(name or "")
    return int(match.group(1)) if match else default


def _leaf(element: Any) -> str:
    value = element.value
    raw = getattr(value, "value", value)
    return raw if isinstance(raw, str) else value.to_er7()
