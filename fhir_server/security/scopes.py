"""SMART App Launch v2 scopes (`user/Task.rs`, `patient/*.r`, `system/Encounter.cu`), with the
v1 forms (`.read`, `.write`, `.*`) read as their v2 equivalents.

A scope with search parameters (v2 granular scopes, `user/Observation.rs?category=...`) grants
nothing here: honouring it would need the criteria checked on every read, and granting the
whole type instead would widen access beyond what the client asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PERMISSIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"(patient|user|system)/([A-Za-z]+|\*)\.([a-z*]+)")


@dataclass(frozen=True)
class Grant:
    context: str  # patient, user or system
    type: str  # a resource type or *
    permissions: frozenset[str]


def _permissions(text: str) -> frozenset[str] | None:
    if text in _V1:
        return frozenset(_V1[text])
    # v2: a subset of c, r, u, d, s in that order, each at most once
    if not text or any(c not in PERMISSIONS for c in text):
        return None
    if list(text) != sorted(set(text), key=PERMISSIONS.index):
        return None
    return frozenset(text)


@dataclass(frozen=True)
class Scopes:
    grants: tuple[Grant, ...] = ()
    text: str = ""

    @classmethod
    def parse(cls, text: str | None) -> Scopes:
        """The resource scopes of a space-separated scope string; others (openid, fhirUser,
        launch/patient, offline_access) and malformed ones are ignored."""
        grants = []
        for scope in (text or "").split():
            match = _SCOPE.fullmatch(scope)
            if match is None:
                continue
            permissions = _permissions(match.group(3))
            if permissions:
                grants.append(Grant(match.group(1), match.group(2), permissions))
        return cls(tuple(grants), text or "")

    def contexts(self, type_: str, permission: str) -> frozenset[str]:
        """The launch contexts (patient, user, system) under which `permission` on `type_` is
        granted; empty: not granted."""
        return frozenset(
            g.context for g in self.grants if permission in g.permissions and g.type in (type_, "*")
        )
