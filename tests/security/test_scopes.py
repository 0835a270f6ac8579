"""SMART scopes as tokens carry them: what each form grants, and what grants nothing."""

from __future__ import annotations

import pytest

from fhir_server.security.scopes import Scopes


def test_v2_scope_grants_its_permissions_in_its_context() -> None:
    scopes = Scopes.parse("user/Task.rs")
    assert scopes.contexts("Task", "r") == {"user"}
    assert scopes.contexts("Task", "s") == {"user"}
    assert scopes.contexts("Task", "u") == frozenset()
    assert scopes.contexts("Patient", "r") == frozenset()


@pytest.mark.parametrize(
    ("v1", "granted", "refused"),
    [("read", "rs", "cud"), ("write", "cud", "rs"), ("*", "cruds", "")],
)
def test_v1_scopes_read_as_their_v2_equivalents(v1: str, granted: str, refused: str) -> None:
    scopes = Scopes.parse(f"patient/Observation.{v1}")
    assert all(scopes.contexts("Observation", p) == {"patient"} for p in granted)
    assert all(not scopes.contexts("Observation", p) for p in refused)


@pytest.mark.parametrize("scope", ["user/Task.sr", "user/Task.rr", "user/Task.x", "user/Task."])
def test_permissions_out_of_cruds_order_or_unknown_grant_nothing(scope: str) -> None:
    assert Scopes.parse(scope).grants == ()


def test_wildcard_type_grants_every_type() -> None:
    scopes = Scopes.parse("system/*.cruds")
    assert scopes.contexts("Encounter", "c") == {"system"}
    assert scopes.contexts("Patient", "d") == {"system"}


def test_granular_scope_with_search_parameters_grants_nothing() -> None:
    scopes = Scopes.parse("user/Observation.rs?category=laboratory")
    assert scopes.grants == ()
    assert scopes.contexts("Observation", "r") == frozenset()


def test_non_resource_scopes_are_ignored_beside_resource_ones() -> None:
    scopes = Scopes.parse("openid fhirUser launch/patient offline_access patient/Task.r")
    assert [(g.context, g.type) for g in scopes.grants] == [("patient", "Task")]
    assert scopes.text.startswith("openid")


def test_contexts_accumulate_over_several_scopes() -> None:
    scopes = Scopes.parse("user/Task.r patient/*.rs system/Task.cu")
    assert scopes.contexts("Task", "r") == {"user", "patient"}
    assert scopes.contexts("Task", "c") == {"system"}


def test_no_scope_grants_nothing() -> None:
    assert Scopes.parse(None).contexts("Task", "r") == frozenset()
    assert Scopes.parse("").grants == ()
