"""Search parameters as data: the base R4 definitions (compact table in `profiles/tables/`) and
the project's own SearchParameter resources (`profiles/search-parameters/`)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fhir_server.model.fhirpath_text import split_union
from fhir_server.model.registry import resource_types
from profiles import PROFILES_DIR, TABLES_DIR

CUSTOM_DIR = PROFILES_DIR / "search-parameters"


@dataclass(frozen=True)
class Component:
    definition: str
    expression: str


@dataclass(frozen=True)
class SearchParameter:
    """One search parameter as it applies to one resource type."""

    url: str
    code: str
    type: str  # number, date, string, token, reference, composite, quantity, uri
    resource_type: str
    expression: str
    target: tuple[str, ...] = ()
    component: tuple[Component, ...] = ()


@dataclass(eq=False)  # identity-hashed: caches key on the registry
class Registry:
    """Parameters by resource type and code; `Resource` parameters apply to every type."""

    by_type: dict[str, dict[str, SearchParameter]] = field(default_factory=dict)
    by_url: dict[str, list[SearchParameter]] = field(default_factory=lambda: defaultdict(list))
    definitions: list[dict[str, Any]] = field(default_factory=list)  # the custom resources

    def add(self, row: dict[str, Any]) -> None:
        for base, expression in row["expression"].items():
            types = sorted(resource_types()) if base in ("Resource", "DomainResource") else [base]
            for type_ in types:
                if base == "DomainResource" and type_ in ("Bundle", "Binary", "Parameters"):
                    continue
                param = SearchParameter(
                    url=row["url"],
                    code=row["code"],
                    type=row["type"],
                    resource_type=type_,
                    expression=expression.replace(f"{base}.", f"{type_}.", 1)
                    if base in ("Resource", "DomainResource")
                    else expression,
                    target=tuple(row.get("target", ())),
                    component=tuple(Component(**c) for c in row.get("component", ())),
                )
                self.by_type.setdefault(type_, {})[param.code] = param
                self.by_url[param.url].append(param)

    def get(self, resource_type: str, code: str) -> SearchParameter | None:
        return self.by_type.get(resource_type, {}).get(code)

    def for_type(self, resource_type: str) -> dict[str, SearchParameter]:
        return self.by_type.get(resource_type, {})

    def by_definition(self, url: str, resource_type: str) -> SearchParameter | None:
        return next((p for p in self.by_url.get(url, ()) if p.resource_type == resource_type), None)


def _custom_row(resource: dict[str, Any]) -> dict[str, Any]:
    """A SearchParameter resource in the compact table's shape (one base per expression)."""
    expressions: dict[str, list[str]] = {}
    for part in split_union(resource["expression"]):
        owner = part.lstrip("(").split(".", 1)[0]
        if owner not in resource["base"]:
            owner = resource["base"][0]
        expressions.setdefault(owner, []).append(part)
    row = {
        "url": resource["url"],
        "code": resource["code"],
        "type": resource["type"],
        "expression": {b: " | ".join(p) for b, p in expressions.items()},
    }
    if resource.get("target"):
        row["target"] = resource["target"]
    if resource.get("component"):
        row["component"] = resource["component"]
    return row


def load_registry(custom_dir: Path = CUSTOM_DIR) -> Registry:
    registry = Registry()
    table = json.loads((TABLES_DIR / "search-parameters.json").read_text())
    for row in table["parameters"]:
        registry.add(row)
    for path in sorted(custom_dir.glob("*.json")) if custom_dir.is_dir() else ():
        resource = json.loads(path.read_text())
        registry.definitions.append(resource)
        registry.add(_custom_row(resource))
    return registry


@cache
def default_registry() -> Registry:
    return load_registry()
