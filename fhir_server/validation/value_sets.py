"""The codes of every value set a binding may name, expanded once at start-up.

Two sources: the ValueSets shipped in `profiles/value-sets` (explicit concepts, or every code of
a CodeSystem shipped in `profiles/code-systems`), and the expansions of the base R4 value sets
in the compact table `profiles/tables/required-bindings.json`. A value set that neither can
expand (a filter, a nested value set, a code system the server does not ship) is refused at
start-up rather than silently accepting every code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fhir_server.validation.structure_definitions import by_url, split_canonical


@dataclass(frozen=True, slots=True)
class Expansion:
    """The (system, code) pairs of a value set, and its codes alone for `code` elements, whose
    system is implied by the binding."""

    url: str
    codings: frozenset[tuple[str, str]]
    codes: frozenset[str]

    @classmethod
    def of(cls, url: str, codings: Iterable[tuple[str, str]]) -> Expansion:
        pairs = frozenset(codings)
        return cls(url, pairs, frozenset(code for _, code in pairs))


def _concepts(concepts: list[dict[str, Any]]) -> Iterable[str]:
    for concept in concepts:
        yield concept["code"]
        yield from _concepts(concept.get("concept", []))


class ValueSets:
    def __init__(
        self,
        value_sets: list[dict[str, Any]],
        code_systems: list[dict[str, Any]],
        base: Mapping[str, Mapping[str, list[str]]],
    ) -> None:
        self._definitions = by_url(value_sets)
        self._code_systems = by_url(code_systems)
        self._expansions = {
            url: Expansion.of(url, ((s, c) for s, codes in systems.items() for c in codes))
            for url, systems in base.items()
        }
        for url in self._definitions:
            self.expansion(url)

    def expansion(self, canonical: str) -> Expansion:
        url, _ = split_canonical(canonical)
        if url not in self._expansions:
            definition = self._definitions.get(url)
            if definition is None:
                raise ValueError(f"value set {url} is neither shipped nor in the base table")
            self._expansions[url] = self._expand(definition)
        return self._expansions[url]

    def _expand(self, definition: dict[str, Any]) -> Expansion:
        compose = definition.get("compose", {})
        url = definition["url"]
        included = set().union(*(self._part(url, p) for p in compose.get("include", [])))
        excluded = set().union(*(self._part(url, p) for p in compose.get("exclude", [])))
        return Expansion.of(url, included - excluded)

    def _part(self, url: str, part: dict[str, Any]) -> set[tuple[str, str]]:
        """The codings of one `compose.include` (or exclude): listed concepts, or every code of
        a shipped CodeSystem."""
        system = part.get("system")
        if system is None or "filter" in part or "valueSet" in part:
            raise ValueError(f"{url}: only includes of a system (all or some codes) are supported")
        if "concept" in part:
            return {(system, concept["code"]) for concept in part["concept"]}
        if system not in self._code_systems:
            raise ValueError(f"{url}: includes all of {system}, which is not shipped")
        return {(system, code) for code in _concepts(self._code_systems[system].get("concept", []))}
