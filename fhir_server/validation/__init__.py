"""Profile validation: what `fhir.resources` does not check.

The structure check (`fhir_server.model.structure`) enforces the JSON format and the base
resources' structure and cardinality. This package adds the required value-set bindings of the
base specification, checked on every resource, and the rules of the profiles shipped in
`profiles/` (FR Core and the CPTS pathway profiles): cardinality, fixed and pattern values,
slicing, required bindings, FHIRPath invariants and reference target types. Each problem is an
`Issue` with its FHIRPath location, all of them reported at once.
"""

from fhir_server.validation.validator import Validator

__all__ = ["Validator"]
