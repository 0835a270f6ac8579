"""The validator the write pipeline and $validate call: base required bindings on every
resource, and the rules of the profiles asked for."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fhir_server.errors import Issue
from fhir_server.model.registry import resource_types
from fhir_server.validation.bindings import RequiredBindings
from fhir_server.validation.profile import Compiler, Profile
from fhir_server.validation.structure_definitions import (
    CORE_PREFIX,
    StructureDefinitions,
    load_folder,
    split_canonical,
)
from fhir_server.validation.value_sets import ValueSets
from profiles import PROFILES_DIR


class Validator:
    """Loads the conformance resources of `profiles_dir` and compiles every profile once, so
    that a profile that cannot be enforced fails the start-up, not a write. One instance serves
    every thread: the only state it adds later, the base-binding plan of a resource type built
    on its first use, is published whole."""

    def __init__(self, profiles_dir: Path = PROFILES_DIR) -> None:
        self._structure_definitions = load_folder(
            profiles_dir / "structure-definitions", "StructureDefinition"
        )
        self._value_sets = load_folder(profiles_dir / "value-sets", "ValueSet")
        self._code_systems = load_folder(profiles_dir / "code-systems", "CodeSystem")
        table = json.loads((profiles_dir / "tables" / "required-bindings.json").read_text())
        value_sets = ValueSets(self._value_sets, self._code_systems, table["valueSets"])
        self._bindings = RequiredBindings(table["bindings"], value_sets, resource_types())
        self._definitions = StructureDefinitions(self._structure_definitions)
        compiler = Compiler(self._definitions, value_sets)
        self._profiles = {d["url"]: compiler.profile(d["url"]) for d in self._structure_definitions}

    def validate(self, resource: dict[str, Any], profiles: Sequence[str] = ()) -> list[Issue]:
        """Every problem of `resource` (which has passed the structure check): the base required
        bindings, then the rules of each profile (canonical URL, optionally `|version`). The
        caller passes the profiles of `meta.profile` and those it requires. An unknown profile,
        or one of another resource type, is an error issue. A rule that two profiles share (a
        profile and its base) is reported once."""
        issues = self._bindings.check(resource)
        for canonical in dict.fromkeys(profiles):
            profile = self._profile(canonical, resource["resourceType"], issues)
            if profile is not None:
                issues.extend(profile.validate(resource))
        return list(dict.fromkeys(issues))

    def _profile(self, canonical: str, resource_type: str, issues: list[Issue]) -> Profile | None:
        url, _ = split_canonical(canonical)
        if url == CORE_PREFIX + resource_type:
            return None  # the base resource: the structure check has enforced it
        definition = self._definitions.find(canonical)
        if definition is None:
            issues.append(
                Issue("not-supported", f"Profile {canonical} is not known to this server")
            )
            return None
        profile = self._profiles[definition["url"]]
        if profile.type != resource_type or definition["kind"] != "resource":
            issues.append(
                Issue(
                    "invalid", f"Profile {canonical} constrains {profile.type}, not {resource_type}"
                )
            )
            return None
        return profile

    def structure_definitions(self) -> list[dict[str, Any]]:
        """The shipped StructureDefinitions, to serve read-only."""
        return copy.deepcopy(self._structure_definitions)

    def value_sets(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._value_sets)

    def code_systems(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._code_systems)
