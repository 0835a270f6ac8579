"""Fixed and pattern values (ElementDefinition.fixed[x], pattern[x]), on JSON values.

A fixed value must be matched exactly, missing elements included. A pattern only says what the
instance must contain: every property of the pattern, recursively, and for a repeating element
every item of the pattern matched by some item of the instance.
"""

from __future__ import annotations

import json
from typing import Any


def fixed_or_pattern(definition: dict[str, Any]) -> tuple[str, Any] | None:
    """("fixed" | "pattern", value) of an element definition, None when it has neither."""
    for key, value in definition.items():
        if key.startswith("fixed"):
            return "fixed", value
        if key.startswith("pattern"):
            return "pattern", value
    return None


def equals(value: Any, fixed: Any) -> bool:
    """JSON equality: the structure check has already given each element its JSON type."""
    return value == fixed


def contains(value: Any, pattern: Any) -> bool:
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and contains(value[key], part) for key, part in pattern.items()
        )
    if isinstance(pattern, list):
        values = value if isinstance(value, list) else [value]
        return all(any(contains(item, part) for item in values) for part in pattern)
    return equals(value, pattern)


def show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
