"""The issues one validation finds, with the resource they are about (invariants refer to it as
%resource)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.errors import Issue


@dataclass(slots=True)
class Report:
    resource: dict[str, Any]
    issues: list[Issue] = field(default_factory=list)

    def add(self, code: str, diagnostics: str, where: str, severity: str = "error") -> None:
        self.issues.append(Issue(code, diagnostics, severity, where))
