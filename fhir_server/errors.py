"""FHIR errors: every failure the server reports travels as an `FhirError` carrying the HTTP
status and the issues of the OperationOutcome that the REST layer (or an adapter) renders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: severity, IssueType code, text and FHIRPath location."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: str | None = None

    def to_json(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


@dataclass
class FhirError(Exception):
    """A refused interaction. `status` is the HTTP status the R4 REST API prescribes."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    # The interaction that failed, set by the engine: what the audit trail records of a refusal.
    interaction: Any = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return "; ".join(issue.diagnostics for issue in self.issues)

    @classmethod
    def of(
        cls, status: int, code: str, diagnostics: str, expression: str | None = None
    ) -> FhirError:
        return cls(status, [Issue(code, diagnostics, expression=expression)])

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def bad_request(diagnostics: str, expression: str | None = None) -> FhirError:
    return FhirError.of(400, "invalid", diagnostics, expression)


def not_found(diagnostics: str) -> FhirError:
    return FhirError.of(404, "not-found", diagnostics)


def gone(diagnostics: str) -> FhirError:
    return FhirError.of(410, "deleted", diagnostics)


def conflict(diagnostics: str) -> FhirError:
    return FhirError.of(409, "conflict", diagnostics)


def precondition_failed(diagnostics: str) -> FhirError:
    return FhirError.of(412, "conflict", diagnostics)
