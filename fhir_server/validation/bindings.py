"""The required bindings of the base R4 specification, checked on every resource written.

fhir.resources checks that a code is a code, not that it belongs to its value set: a Task with
status "bogus" or a Patient with gender "F" parses. The compact table
`profiles/tables/required-bindings.json` gives each bound element path and the codes of its
value set. The first time a resource type is checked, the paths under it and under the data
types it uses are resolved to (model class, JSON property) through the element tables, and each
of these classes gets a plan of the properties worth visiting: the bound ones, and those whose
type can contain a bound element (transitively; contained resources are planned by their own
type). The walk looks up only the properties an instance has, so its cost follows the size of
the resource; planning per type keeps the start-up from loading every model.

Not checked: the value sets the table lists under `notExpanded`, whose codes cannot be listed
(MIME types: Attachment.contentType, Binary.contentType and the like; currencies:
Money.currency; UCUM units; the LOINC answer list of MolecularSequence.structureVariant).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import Issue
from fhir_server.model.elements import Element, ModelClass, elements, model_class
from fhir_server.validation.value_sets import Expansion, ValueSets


@dataclass(frozen=True, slots=True)
class _Step:
    """What to do with one property of an instance of a class."""

    is_list: bool
    is_code: bool  # a code (else, when bound, a CodeableConcept)
    is_resource: bool  # a contained resource, walked with the plan of its own type
    binding: Expansion | None
    path: str  # the bound element path, for messages
    walk: dict[str, _Step] | None  # plan of the element's own type, when worth visiting


def resolve(path: str) -> tuple[ModelClass, Element]:
    """`Patient.contact.gender` → (the PatientContact model, its `gender` element)."""
    root, *names = path.split(".")
    model, element = model_class(root), None
    for index, name in enumerate(names):
        element = elements(model)[name]
        if index < len(names) - 1:
            if element.model is None:
                raise ValueError(f"{path}: {name} has no elements")
            model = element.model
    if element is None or not (element.primitive == "code" or _is_concept(element)):
        raise ValueError(f"{path}: only code and CodeableConcept bindings are supported")
    return model, element


def _is_concept(element: Element) -> bool:
    return element.model is not None and element.model.__name__ == "CodeableConcept"


def _reachable(root: ModelClass) -> set[ModelClass]:
    seen: set[ModelClass] = set()
    stack = [root]
    while stack:
        model = stack.pop()
        if model not in seen:
            seen.add(model)
            stack.extend(e.model for e in elements(model).values() if e.model is not None)
    return seen


class RequiredBindings:
    """Safe to share between threads: plans are built whole, then published."""

    def __init__(
        self, bindings: Mapping[str, str], value_sets: ValueSets, resource_types: Iterable[str]
    ) -> None:
        self._by_root: dict[str, list[tuple[str, Expansion]]] = {}
        for path, url in bindings.items():
            root = path.split(".", 1)[0]
            self._by_root.setdefault(root, []).append((path, value_sets.expansion(url)))
        self._types = frozenset(resource_types)
        self._plans: dict[ModelClass, dict[str, _Step]] = {}
        self._idle: set[ModelClass] = set()  # classes that can hold no bound element

    def _plan(self, resource_type: Any) -> dict[str, _Step] | None:
        if resource_type not in self._types:
            return None
        model = model_class(resource_type)
        if model not in self._plans and model not in self._idle:
            self._build(model)
        return self._plans.get(model)

    def _build(self, root: ModelClass) -> None:
        """Plan the classes reachable from `root` that no earlier build has planned."""
        models = _reachable(root) - self._plans.keys() - self._idle
        bound: dict[ModelClass, dict[str, tuple[str, Expansion]]] = {}
        for model in models:
            for path, expansion in self._by_root.get(model.__name__, ()):
                owner, element = resolve(path)
                if owner not in models:
                    raise ValueError(f"{path}: {owner.__name__} was planned without it")
                bound.setdefault(owner, {})[element.name] = (path, expansion)
        relevant = set(bound) | self._plans.keys()
        while grown := {
            m
            for m in models - relevant
            if any(e.is_resource or e.model in relevant for e in elements(m).values())
        }:
            relevant |= grown
        plans: dict[ModelClass, dict[str, _Step]] = {m: {} for m in relevant & models}
        lookup = {**self._plans, **plans}
        for model, plan in plans.items():
            for name, element in elements(model).items():
                path, expansion = bound.get(model, {}).get(name, ("", None))
                walk = lookup.get(element.model) if element.model else None
                if expansion is not None or walk is not None or element.is_resource:
                    plan[name] = _Step(
                        is_list=element.is_list,
                        is_code=element.primitive is not None,
                        is_resource=element.is_resource,
                        binding=expansion,
                        path=path,
                        walk=walk,
                    )
        self._idle |= models - relevant
        self._plans.update(plans)

    def check(self, resource: dict[str, Any]) -> list[Issue]:
        issues: list[Issue] = []
        self._resource(resource, resource["resourceType"], issues)
        return issues

    def _resource(self, data: Any, where: str, issues: list[Issue]) -> None:
        plan = self._plan(data.get("resourceType")) if isinstance(data, dict) else None
        if plan is not None:
            self._walk(plan, data, where, issues)

    def _walk(self, plan: dict[str, _Step], data: dict[str, Any], where: str, issues: list) -> None:
        for key, value in data.items():
            step = plan.get(key)
            if step is None:
                continue
            if step.is_list:
                for index, item in enumerate(value):
                    self._visit(step, item, f"{where}.{key}[{index}]", issues)
            else:
                self._visit(step, value, f"{where}.{key}", issues)

    def _visit(self, step: _Step, value: Any, where: str, issues: list[Issue]) -> None:
        if value is None:  # a null in a primitive array, kept for its _element sibling
            return
        expansion = step.binding
        if expansion is not None:
            if step.is_code:
                if value not in expansion.codes:
                    issues.append(_outside(f"{step.path}: {value!r} is not", expansion, where))
            elif not any(
                (c.get("system"), c.get("code")) in expansion.codings
                for c in value.get("coding", ())
            ):
                issues.append(_outside(f"{step.path}: none of the codings is", expansion, where))
        if step.is_resource:
            self._resource(value, where, issues)
        elif step.walk is not None:
            self._walk(step.walk, value, where, issues)


def _outside(what: str, expansion: Expansion, where: str) -> Issue:
    return Issue(
        "code-invalid", f"{what} in the required value set {expansion.url}", expression=where
    )
