"""Profiles compiled from their differentials into trees of element rules.

A StructureDefinition's differential, merged with those of its shipped bases
(`structure_definitions.py`), becomes a tree of `ElementRule`s, one per element it names, each
holding the checks its definition calls for: cardinality, fixed and pattern values, required
bindings (on code, Coding and CodeableConcept), types (the choice types kept, the resource types
a Reference may target, the profile of an extension or data type), invariants and slicing.
Validation walks that tree only, so a profile costs what its rules cost, whatever the size of
the resource. A differential property that constrains instances and that this compiler does not
implement (maxLength, minValue, re-slicing...) is refused when the profile loads, never ignored;
bindings weaker than required do not constrain instances and are not checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import Issue
from fhir_server.model.elements import Element, ModelClass, elements, model_class
from fhir_server.validation.differential import Node, tree
from fhir_server.validation.invariants import compile_invariant
from fhir_server.validation.patterns import contains, equals, fixed_or_pattern, show
from fhir_server.validation.references import target_type
from fhir_server.validation.report import Report
from fhir_server.validation.slicing import Items, Slice, Slicing, discriminator
from fhir_server.validation.structure_definitions import StructureDefinitions
from fhir_server.validation.value_sets import ValueSets

Check = Callable[[Any, str, Report], None]  # (value, FHIRPath location, report)

_DOCUMENTATION = frozenset(
    {
        "id",
        "path",
        "sliceName",
        "short",
        "definition",
        "comment",
        "requirements",
        "alias",
        "label",
        "mustSupport",
        "isSummary",
        "isModifier",
        "isModifierReason",
        "mapping",
        "example",
        "meaningWhenMissing",
        "orderMeaning",
        "condition",
    }
)
_ENFORCED = frozenset({"min", "max", "type", "binding", "constraint", "slicing"})


@dataclass(eq=False, slots=True)
class ElementRule:
    """The rules of one element (or slice) of a profile."""

    label: str  # element id, e.g. Patient.identifier:INS-NIR.system
    name: str  # element name in locations (a choice element by its base name: `value`)
    keys: tuple[str, ...]  # JSON properties that carry the element (every type of a choice)
    allowed: frozenset[str]  # the properties the profile allows
    key_set: frozenset[str]  # the keys, for a quick membership test
    is_list: bool
    min: int
    max: int | None
    checks: tuple[Check, ...]
    children: tuple[ElementRule, ...]
    slicing: Slicing | None
    inspects: bool  # whether the values themselves are looked at, not just counted

    def apply(self, parent: dict[str, Any], where: str, report: Report) -> None:
        """Check this element of `parent`, whose location is `where`. Locations are only built
        for the values the rule looks into, and for the problems it reports."""
        inspects = self.inspects
        items: Items = []
        count = 0
        # a choice has dozens of keys and an instance one of them: look at the instance's keys
        keys = self.keys if len(self.keys) == 1 else [k for k in parent if k in self.key_set]
        for key in keys:
            value = parent.get(key)
            if value is None:
                continue
            if key not in self.allowed:
                text = f"{self.label}: type {key} is not allowed here"
                report.add("structure", text, f"{where}.{key}")
            elif not self.is_list:
                count += 1
                if inspects:
                    items.append((value, f"{where}.{key}"))
            elif inspects:
                items.extend(
                    (item, f"{where}.{key}[{index}]")
                    for index, item in enumerate(value)
                    if item is not None
                )
                count = len(items)
            else:
                count += sum(item is not None for item in value)
        if not count and self.min and any(f"_{key}" in parent for key in self.allowed):
            count = 1  # a primitive given by its extensions only
        if count < self.min or (self.max is not None and count > self.max):
            self.cardinality(count, f"{where}.{self.name}", report)
        if inspects:
            self.check_items(items, f"{where}.{self.name}", report)

    def cardinality(self, count: int, where: str, report: Report) -> None:
        if count < self.min:
            report.add("required", f"{self.label}: minimum {self.min}, found {count}", where)
        elif self.max is not None and count > self.max:
            report.add("structure", f"{self.label}: maximum {self.max}, found {count}", where)

    def check_items(self, items: Items, where: str, report: Report) -> None:
        for value, location in items:
            for check in self.checks:
                check(value, location, report)
            if self.children and isinstance(value, dict):
                for child in self.children:
                    child.apply(value, location, report)
        if self.slicing is not None:
            self.slicing.apply(items, where, report)


@dataclass(frozen=True, slots=True)
class Profile:
    url: str
    type: str
    root: ElementRule

    def validate(self, resource: dict[str, Any]) -> list[Issue]:
        report = Report(resource)
        self.root.check_items([(resource, self.type)], self.type, report)
        return report.issues


def _type_name(element: Element) -> str:
    """The FHIR type code of a model element: its primitive type, or its complex type."""
    model = element.model
    return element.primitive or (model.__name__ if model is not None else "")


class Compiler:
    """Compiles each shipped profile once; profiles of extensions and data types that a profile
    uses are compiled with it and shared."""

    def __init__(self, definitions: StructureDefinitions, value_sets: ValueSets) -> None:
        self._definitions = definitions
        self._value_sets = value_sets
        self._profiles: dict[str, Profile] = {}
        self._pending: set[str] = set()

    def profile(self, url: str) -> Profile:
        if url not in self._profiles:
            definition = self._definitions.by_url.get(url)
            if definition is None:
                raise ValueError(f"profile {url} is not shipped")
            if url in self._pending:
                raise ValueError(f"{url}: a profile that contains itself is not supported")
            self._pending.add(url)
            type_name = definition["type"]
            root = tree(type_name, self._definitions.elements(definition))
            try:
                rule = self._rule(root, type_name, type_name, (), None, model_class(type_name))
            except ValueError as exc:
                raise ValueError(f"{url}: {exc}") from exc
            self._profiles[url] = Profile(url, type_name, rule)
            self._pending.discard(url)
        return self._profiles[url]

    def _rule(
        self,
        node: Node,
        label: str,
        name: str,
        keys: tuple[str, ...],
        element: Element | None,
        model: ModelClass | None,
        allowed: frozenset[str] = frozenset(),
    ) -> ElementRule:
        """The rule of `node`: `element` is its model element (None for the root, and for a
        choice that keeps several types), `model` the type its children belong to."""
        definition = node.definition
        kind = _type_name(element) if element is not None else model.__name__ if model else None
        children: tuple[ElementRule, ...] = ()
        if node.children:
            if model is None:
                raise ValueError(f"{label}: elements below a primitive or a multi-type choice")
            children = tuple(self._child(child, model, label) for child in node.children.values())
        slicing = None
        if node.slices:
            slicing = self._slicing(node, label, name, keys, element, model, allowed)
        checks = tuple(self._checks(definition, label, element, kind))
        maximum = definition.get("max", "*")
        return ElementRule(
            label=label,
            name=name,
            keys=keys,
            allowed=allowed,
            key_set=frozenset(keys),
            is_list=element.is_list if element is not None else False,
            min=definition.get("min", 0),
            max=None if maximum == "*" else int(maximum),
            checks=checks,
            children=children,
            slicing=slicing,
            inspects=bool(checks or children or slicing),
        )

    def _child(self, node: Node, parent: ModelClass, parent_label: str) -> ElementRule:
        label = f"{parent_label}.{node.name}"
        table = elements(parent)
        types = [t["code"] for t in node.definition.get("type", ())]
        if node.name.endswith("[x]"):
            base = node.name[:-3]
            variants = {e.name: e for e in table.values() if e.choice == base}
            allowed = {base + t[0].upper() + t[1:] for t in types} if types else set(variants)
            if not variants or not allowed <= variants.keys():
                raise ValueError(f"{label}: not a choice of these types")
            element = variants[next(iter(allowed))] if len(allowed) == 1 else None
            keys, name = tuple(variants), base
        else:
            element = table.get(node.name)
            if element is None:
                raise ValueError(f"{label}: no such element")
            if types and types != [_type_name(element)]:
                raise ValueError(f"{label}: type {types} is not the element's")
            keys, name, allowed = (node.name,), node.name, {node.name}
        model = element.model if element is not None and element.primitive is None else None
        return self._rule(node, label, name, keys, element, model, frozenset(allowed))

    def _slicing(
        self,
        node: Node,
        label: str,
        name: str,
        keys: tuple[str, ...],
        element: Element | None,
        model: ModelClass | None,
        allowed: frozenset[str],
    ) -> Slicing:
        spec = node.definition.get("slicing")
        if spec is None or not spec.get("discriminator"):
            raise ValueError(f"{label}: slices without a slicing discriminator")
        if spec.get("ordered"):
            raise ValueError(f"{label}: ordered slicing is not supported")
        slices = []
        for slice_name, slice_node in node.slices.items():
            slice_label = f"{label}:{slice_name}"
            rule = self._rule(slice_node, slice_label, name, keys, element, model, allowed)
            tests = tuple(discriminator(slice_node, d, slice_label) for d in spec["discriminator"])
            slices.append(Slice(rule, tests))
        return Slicing(label, tuple(slices), closed=spec.get("rules", "open") == "closed")

    def _checks(
        self, definition: dict[str, Any], label: str, element: Element | None, kind: str | None
    ) -> list[Check]:
        unknown = {
            key
            for key in definition
            if key not in _DOCUMENTATION
            and key not in _ENFORCED
            and not key.startswith(("fixed", "pattern"))
        }
        if unknown:
            raise ValueError(f"{label}: {', '.join(sorted(unknown))} not supported")
        checks: list[Check] = []
        if (value := fixed_or_pattern(definition)) is not None:
            checks.append(_value_check(label, *value))
        binding = definition.get("binding", {})
        if binding.get("strength") == "required":
            if "valueSet" not in binding:
                raise ValueError(f"{label}: a required binding without a value set")
            checks.append(self._binding_check(label, kind, binding["valueSet"]))
        for type_ in definition.get("type", ()):
            if type_.get("targetProfile"):
                if kind != "Reference":
                    raise ValueError(f"{label}: targetProfile is only checked on a Reference")
                checks.append(self._target_check(label, type_["targetProfile"]))
            if type_.get("profile"):
                checks.append(self._profile_check(label, kind, type_["profile"]))
        for constraint in definition.get("constraint", ()):
            if element is not None and element.primitive is not None:
                raise ValueError(f"{label}: put invariants on the element holding the primitive")
            checks.append(compile_invariant(constraint).check)
        return checks

    def _binding_check(self, label: str, kind: str | None, value_set: str) -> Check:
        expansion = self._value_sets.expansion(value_set)
        text = f"is not in the required value set {expansion.url}"
        none = f"{label}: none of the codings is in the required value set {expansion.url}"
        if kind in ("code", "string", "uri"):

            def check(value: Any, where: str, report: Report) -> None:
                if value not in expansion.codes:
                    report.add("code-invalid", f"{label}: {show(value)} {text}", where)

        elif kind in ("Coding", "Quantity"):

            def check(value: Any, where: str, report: Report) -> None:
                if (value.get("system"), value.get("code")) not in expansion.codings:
                    report.add("code-invalid", f"{label}: {show(value)} {text}", where)

        elif kind == "CodeableConcept":

            def check(value: Any, where: str, report: Report) -> None:
                codings = value.get("coding", ())
                if not any((c.get("system"), c.get("code")) in expansion.codings for c in codings):
                    report.add("code-invalid", none, where)

        else:
            raise ValueError(f"{label}: a binding on {kind} is not supported")
        return check

    def _target_check(self, label: str, profiles: list[str]) -> Check:
        types = frozenset(self._definitions.target_type(p) for p in profiles)
        allowed = ", ".join(sorted(types))

        def check(value: Any, where: str, report: Report) -> None:
            found = target_type(value, report.resource)
            if found is not None and found not in types:
                report.add(
                    "structure", f"{label}: a reference to {found} (allowed: {allowed})", where
                )

        return check

    def _profile_check(self, label: str, kind: str | None, profiles: list[str]) -> Check:
        if len(profiles) != 1:
            raise ValueError(f"{label}: one profile per type is supported")
        nested = self.profile(profiles[0])
        if nested.type != kind:
            raise ValueError(f"{label}: profile {profiles[0]} constrains {nested.type}, not {kind}")
        root = nested.root
        return lambda value, where, report: root.check_items([(value, where)], where, report)


def _value_check(label: str, how: str, expected: Any) -> Check:
    compare = equals if how == "fixed" else contains
    text = f"{label}: must {'be' if how == 'fixed' else 'match'} {show(expected)}"

    def check(value: Any, where: str, report: Report) -> None:
        if not compare(value, expected):
            report.add("value", f"{text}, found {show(value)}", where)

    return check
