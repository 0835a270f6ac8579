"""Compartments (compartmentdefinition.html): which reference parameters put a resource in a
patient's compartment, for `GET /Patient/1/Task` and the authorisation of later issues."""

from __future__ import annotations

import json
from functools import cache

from profiles import TABLES_DIR

SUPPORTED = ("Patient",)


@cache
def _patient_members() -> dict[str, list[str]]:
    return json.loads((TABLES_DIR / "compartment-patient.json").read_text())["members"]


def compartment_params(compartment_type: str, resource_type: str) -> list[str] | None:
    """The parameter codes linking `resource_type` to the compartment; [] for the compartment's
    own resource; None when the type is not in the compartment."""
    if compartment_type not in SUPPORTED:
        return None
    if resource_type == compartment_type:
        return []
    return _patient_members().get(resource_type)
