"""The resource type a Reference points to, read from the reference itself (never resolved): a
literal `Type/id`, relative or absolute, with or without `_history`; `#id` of a contained
resource; else `Reference.type`. A reference whose type cannot be read this way (`urn:uuid:`
inside a Bundle before the engine makes it literal, a logical reference without `type`) passes."""

from __future__ import annotations

import re
from typing import Any

_LITERAL = re.compile(
    r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]+)?$"
)
_TYPE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


def target_type(reference: dict[str, Any], resource: dict[str, Any]) -> str | None:
    literal = reference.get("reference")
    if isinstance(literal, str):
        if literal.startswith("#"):
            for contained in resource.get("contained", ()):
                if contained.get("id") == literal[1:]:
                    return contained.get("resourceType")
        elif match := _LITERAL.search(literal):
            return match.group(1)
    declared = reference.get("type")
    return declared.removeprefix(_TYPE_PREFIX) if isinstance(declared, str) else None
