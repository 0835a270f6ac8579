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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhir_server.validation.differential import Node
from fhir_server.validation.patterns import contains, equals, fixed_or_pattern
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


@dataclass(frozen=True, slots=True)
class Discriminator:
    """What an item must have at `parts` to belong to a slice: `value`, exactly (fixed) or by
    containment (pattern)."""

    parts: tuple[str, ...]
    fixed: bool
    value: Any

    def test(self, item: Any) -> bool:
        compare = equals if self.fixed else contains
        return any(compare(found, self.value) for found in values_at(item, self.parts))


def discriminator(slice_node: Node, spec: dict[str, Any], label: str) -> Discriminator:
    """The discriminator of a slice, read from its definition."""
    kind, path = spec["type"], spec["path"]
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
    return Discriminator(parts, how == "fixed", value)


@dataclass(frozen=True, slots=True, eq=False)
class Slice:
    rule: ElementRule
    discriminators: tuple[Discriminator, ...]

    def matches(self, item: Any) -> bool:
        return all(d.test(item) for d in self.discriminators)


class Slicing:
    """The slices of an element. When every slice is told by a fixed string at the same property
    (an identifier's system, an extension's url: the common case), an item finds its slice by
    one dictionary lookup."""

    def __init__(self, label: str, slices: tuple[Slice, ...], closed: bool) -> None:
        self.label = label
        self.slices = slices
        self.closed = closed
        self._key: str | None = None
        self._index: dict[str, int] = {}
        shapes = {(d.parts, d.fixed) for s in slices for d in s.discriminators}
        if len(shapes) == 1 and all(len(s.discriminators) == 1 for s in slices):
            ((parts, fixed),) = shapes
            values = [s.discriminators[0].value for s in slices]
            if fixed and len(parts) == 1 and all(isinstance(v, str) for v in values):
                self._key = parts[0]
                for index, value in enumerate(values):
                    self._index.setdefault(value, index)

    def _slice_of(self, item: Any) -> int | None:
        if self._key is not None and isinstance(item, dict):
            found = item.get(self._key)
            if not isinstance(found, list):
                return self._index.get(found) if isinstance(found, str) else None
        return next((i for i, s in enumerate(self.slices) if s.matches(item)), None)

    def apply(self, items: Items, where: str, report: Report) -> None:
        members: list[Items] = [[] for _ in self.slices]
        for value, location in items:
            index = self._slice_of(value)
            if index is not None:
                members[index].append((value, location))
            elif self.closed:
                report.add(
                    "structure", f"{self.label}: matches no slice of a closed slicing", location
                )
        for chosen, found in zip(self.slices, members, strict=True):
            chosen.rule.cardinality(len(found), where, report)
            chosen.rule.check_items(found, where, report)
