"""A profile's merged differential as a tree of element nodes, the shape its rules are compiled
from: `Patient.identifier:INS-NIR.system` is the child `system` of the slice `INS-NIR` of the
child `identifier` of the root `Patient`. Nodes the differential only implies (a parent it does
not list) have an empty definition."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Node:
    name: str  # element name (`identifier`, `value[x]`), or the type for the root
    definition: dict[str, Any] = field(default_factory=dict)
    children: dict[str, Node] = field(default_factory=dict)
    slices: dict[str, Node] = field(default_factory=dict)


def tree(type_name: str, elements: list[dict[str, Any]]) -> Node:
    root = Node(type_name)
    for element in elements:
        head, *segments = element["id"].split(".")
        if head != type_name:
            raise ValueError(f"element {element['id']} is not part of {type_name}")
        node = root
        for segment in segments:
            name, _, slice_name = segment.partition(":")
            node = node.children.setdefault(name, Node(name))
            if slice_name:
                if "/" in slice_name:
                    raise ValueError(f"{element['id']}: re-slicing is not supported")
                node = node.slices.setdefault(slice_name, Node(name))
        node.definition = element
    return root
