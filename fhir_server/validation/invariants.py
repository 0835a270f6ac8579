"""Profile invariants (ElementDefinition.constraint), compiled once and evaluated per element.

An expression within the subset of `fhirpath.py` runs as compiled closures; any other runs on
fhirpathpy with the R4 model, compiled once too. An invariant holds when its expression yields
exactly `true`, as the HL7 validator reads it: false or empty is a violation, reported with the
constraint's severity (a `warning` constraint never refuses a write). fhirpathpy shares no
state between evaluations but the values of now() and today(), so concurrent writes may
evaluate invariants at the same time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.models import models

from fhir_server.validation.fhirpath import Unsupported, compile_fast
from fhir_server.validation.report import Report

Evaluate = Callable[[Any, dict[str, Any]], list[Any]]


@dataclass(frozen=True, slots=True)
class Invariant:
    key: str
    severity: str
    human: str
    expression: str
    evaluate: Evaluate  # (element, resource) -> FHIRPath result
    compiled: bool  # True when the expression runs as compiled closures, not on fhirpathpy

    def check(self, element: Any, where: str, report: Report) -> None:
        try:
            result = self.evaluate(element, report.resource)
        except Exception as exc:  # fhirpathpy raises bare Exceptions for evaluation errors
            report.add("invariant", f"{self.key} could not be evaluated: {exc}", where)
            return
        if not (len(result) == 1 and result[0] is True):
            report.add("invariant", f"{self.key}: {self.human}", where, self.severity)


def compile_invariant(constraint: dict[str, Any]) -> Invariant:
    expression = constraint["expression"]
    try:
        fast = compile_fast(expression)
    except Unsupported:
        slow = fhirpath_compile(expression, models["r4"])
        evaluate: Evaluate = lambda element, resource: slow(  # noqa: E731
            element, {"resource": resource, "rootResource": resource}
        )
        compiled = False
    else:
        evaluate = lambda element, resource: fast([element], resource)  # noqa: E731
        compiled = True
    return Invariant(
        key=constraint["key"],
        severity=constraint.get("severity", "error"),
        human=constraint.get("human", expression),
        expression=expression,
        evaluate=evaluate,
        compiled=compiled,
    )
