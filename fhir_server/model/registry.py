"""The resource types this server stores: FHIR R4 types that `fhir.resources.R4B` models."""

from __future__ import annotations

import json
from functools import cache

from profiles import TABLES_DIR


@cache
def resource_types() -> frozenset[str]:
    table = json.loads((TABLES_DIR / "resource-types.json").read_text())
    return frozenset(table["served"])


def is_resource_type(name: str) -> bool:
    return name in resource_types()
