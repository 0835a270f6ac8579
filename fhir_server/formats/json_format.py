"""FHIR JSON codec.

FHIR requires the precision of decimals to be kept (`1.50` is not `1.5`). orjson is fast but
reads every fraction as a float, so a body whose text holds a decimal that a float would alter
(trailing zero, exponent, 16+ fraction digits) is read by the standard library with `Decimal`
instead. Only number tokens count, so that the fractional seconds of a timestamp
(`"09:00:00.120+00:00"`, half of all `meta.lastUpdated`) do not send a body to the slower
parser. Writing is always orjson, `Decimal` values going out verbatim as JSON fragments.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

from fhir_server.errors import bad_request

# A number token that a float would alter, where one starts: after a key's `":` (with
# whitespace or not), a `[` or a `,`. The lookbehind keeps a timestamp's `:` out.
_FLOAT_UNSAFE = re.compile(
    rb'[:\[,](?<![^"\s]:)\s*-?(?:\d{16,}|\d+\.(?:\d*0(?![\d.])|\d{16,})|\d+(?:\.\d+)?[eE])'
)
_BARE_NUMBER = re.compile(rb"\s*-?\d")  # a text that is a number, not an object


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(data: bytes | str) -> Any:
    """Parse a request body; malformed JSON is a 400 with the parser's message."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        if _FLOAT_UNSAFE.search(raw) or _BARE_NUMBER.match(raw):
            return json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
        return orjson.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"Malformed JSON: {exc}") from None


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, sort_keys: bool = False, pretty: bool = False) -> bytes:
    option = (orjson.OPT_SORT_KEYS if sort_keys else 0) | (orjson.OPT_INDENT_2 if pretty else 0)
    return orjson.dumps(value, default=_default, option=option)
