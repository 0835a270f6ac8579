"""Profile invariants (ElementDefinition.constraint), compiled once and evaluated per element.

An expression within the subset of `fhirpath.py` runs as compiled closures, and on fhirpathpy
(with the R4 model, compiled once too) when it is outside the subset or when an evaluation meets
a primitive's extensions. An invariant holds when its expression yields exactly `true`, as the
HL7 validator reads it: false or empty is a violation, reported with the constraint's severity
(a `warning` constraint never refuses a write). fhirpathpy shares no state between evaluations
but the values of now() and today(), so concurrent writes may evaluate invariants at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.models import models

from fhir_server.validation.fhirpath import PrimitiveExtensions, Unsupported, compile_fast
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
    slow = fhirpath_compile(expression, models["r4"])

    def on_fhirpathpy(element: Any, resource: dict[str, Any]) -> list[Any]:
        return slow(element, {"resource": resource, "rootResource": resource})

    try:
        fast = compile_fast(expression)
    except Unsupported:
        return _invariant(constraint, on_fhirpathpy, compiled=False)

    def fast_first(element: Any, resource: dict[str, Any]) -> list[Any]:
        try:
            return fast([element], resource)
        except PrimitiveExtensions:
            return on_fhirpathpy(element, resource)

    return _invariant(constraint, fast_first, compiled=True)


def _invariant(constraint: dict[str, Any], evaluate: Evaluate, compiled: bool) -> Invariant:
    expression = constraint["expression"]
    return Invariant(
        key=constraint["key"],
        severity=constraint.get("severity", "error"),
        human=constraint.get("human", expression),
        expression=expression,
        evaluate=evaluate,
        compiled=compiled,
    )
