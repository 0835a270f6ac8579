"""Slicing of a repeating element, by `value` or `pattern` discriminators.

Each slice is recognised by the values its definition gives at the discriminator paths: a fixed
value (matched exactly) or a pattern (matched by containment), found on the element at the path
or inside a fixed/pattern value of an element above it; for `url`, the extension profile the
slice is typed with. An item belongs to the first slice all of whose discriminators match;
slice cardinalities are then checked, and each slice's own rules run on its items. Closed
slicing refuses items that match no slice; `openAtEnd` is treated as open, and ordered slicing
and the other discriminator types (type, profile, exists) are refused when the profile loads.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhir_server.validation.differential import Node
from fhir_server.validation.patterns import fixed_or_pattern, matcher
from fhir_server.validation.report import Report

if TYPE_CHECKING:
    from fhir_server.validation.profile import ElementRule

Items = list[tuple[Any, str]]  # (value, FHIRPath location)
_PATH = re.compile(r"^(\$this|[a-zA-Z]+(\.[a-zA-Z]+)*)$")


def values_at(item: Any, parts: tuple[str, ...]) -> list[Any]:
    """The values at a discriminator path of an instance item (repeating elements flattened)."""
    values = [item]
    for part in parts:
        found = []
        for value in values:
            child = value.get(part) if isinstance(value, dict) else None
            if isinstance(child, list):
                found.extend(child)
            elif child is not None:
                found.append(child)
        values = found
    return values


def discriminator(
    slice_node: Node, discriminator: dict[str, Any], label: str
) -> Callable[[Any], bool]:
    """The test an item must pass to belong to the slice, for one discriminator."""
    kind, path = discriminator["type"], discriminator["path"]
    if kind not in ("value", "pattern") or not _PATH.match(path):
        raise ValueError(f"{label}: discriminator {kind} {path!r} is not supported")
    parts = () if path == "$this" else tuple(path.split("."))
    node, rest = slice_node, parts
    while (
        (expected := fixed_or_pattern(node.definition)) is None
        and rest
        and rest[0] in node.children
    ):
        node, rest = node.children[rest[0]], rest[1:]
    if expected is None and parts == ("url",):
        profiles = [p for t in slice_node.definition.get("type", ()) for p in t.get("profile", ())]
        if len(profiles) == 1:
            expected, rest = ("fixed", profiles[0]), ()
    if expected is None:
        raise ValueError(f"{label}: no fixed or pattern value at discriminator path {path!r}")
    how, value = expected
    for part in rest:
        if not isinstance(value, dict):
            raise ValueError(f"{label}: cannot read {path!r} in the slice's {how} value")
        value = value.get(part)
    compare = matcher(how)
    return lambda item: any(compare(found, value) for found in values_at(item, parts))


@dataclass(frozen=True, slots=True, eq=False)
class Slice:
    rule: ElementRule
    tests: tuple[Callable[[Any], bool], ...]

    def matches(self, item: Any) -> bool:
        return all(test(item) for test in self.tests)


@dataclass(frozen=True, slots=True)
class Slicing:
    label: str
    slices: tuple[Slice, ...]
    closed: bool

    def apply(self, items: Items, where: str, report: Report) -> None:
        members: list[Items] = [[] for _ in self.slices]
        for value, location in items:
            for index, candidate in enumerate(self.slices):
                if candidate.matches(value):
                    members[index].append((value, location))
                    break
            else:
                if self.closed:
                    report.add(
                        "structure", f"{self.label}: matches no slice of a closed slicing", location
                    )
        for chosen, found in zip(self.slices, members, strict=True):
            chosen.rule.cardinality(len(found), where, report)
            chosen.rule.check_items(found, where, report)
