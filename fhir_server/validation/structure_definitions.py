"""The conformance resources shipped in `profiles/`, loaded once at start-up and indexed by their
canonical URL.

Profiles are authored as differentials only. A profile derived from another shipped profile
(fr-core-patient-ins from fr-core-patient) is enforced with the rules of both, so its elements
are the differentials of its chain merged by element id, base first: what the derived profile
says about an element overrides the base, and invariants add up. The base resource of the FHIR
specification is not part of the chain: the structure check and the model tables stand for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


def load_folder(folder: Path, resource_type: str) -> list[dict[str, Any]]:
    """Every `*.json` resource of `folder` (none when the folder is absent), in file order."""
    resources = []
    for path in sorted(folder.glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        if resource.get("resourceType") != resource_type or not resource.get("url"):
            raise ValueError(f"{path}: expected a {resource_type} with a url")
        resources.append(resource)
    return resources


def split_canonical(canonical: str) -> tuple[str, str | None]:
    """`url|version` → (url, version); the version is None when absent."""
    url, _, version = canonical.partition("|")
    return url, version or None


def by_url(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    for resource in resources:
        if resource["url"] in index:
            raise ValueError(f"two {resource['resourceType']} resources share {resource['url']}")
        index[resource["url"]] = resource
    return index


class StructureDefinitions:
    """The shipped StructureDefinitions by URL, their chains of bases, and the resource type a
    `targetProfile` stands for."""

    def __init__(self, definitions: list[dict[str, Any]]) -> None:
        self.all = definitions
        self.by_url = by_url(definitions)

    def find(self, canonical: str) -> dict[str, Any] | None:
        url, version = split_canonical(canonical)
        definition = self.by_url.get(url)
        if definition is None or (version is not None and definition.get("version") != version):
            return None
        return definition

    def chain(self, definition: dict[str, Any]) -> list[dict[str, Any]]:
        """The definition and its shipped bases, base first."""
        chain = [definition]
        while (base := self.by_url.get(chain[0].get("baseDefinition", ""))) is not None:
            if base in chain:
                raise ValueError(f"{definition['url']}: circular baseDefinition")
            chain.insert(0, base)
        core = chain[0].get("baseDefinition", "")
        if not core.startswith(CORE_PREFIX):
            raise ValueError(f"{definition['url']}: unknown baseDefinition {core}")
        return chain

    def elements(self, definition: dict[str, Any]) -> list[dict[str, Any]]:
        """The differential elements of the definition's chain, merged by element id."""
        merged: dict[str, dict[str, Any]] = {}
        for link in self.chain(definition):
            for element in link["differential"]["element"]:
                previous = merged.get(element["id"], {})
                constraints = {c["key"]: c for c in previous.get("constraint", ())}
                constraints.update((c["key"], c) for c in element.get("constraint", ()))
                merged[element["id"]] = {**previous, **element}
                if constraints:
                    merged[element["id"]]["constraint"] = list(constraints.values())
        return list(merged.values())

    def target_type(self, profile_url: str) -> str:
        """The resource type a Reference's targetProfile requires."""
        url, _ = split_canonical(profile_url)
        if url.startswith(CORE_PREFIX):
            return url.removeprefix(CORE_PREFIX)
        definition = self.by_url.get(url)
        if definition is None:
            raise ValueError(f"unknown targetProfile {profile_url}")
        return definition["type"]
