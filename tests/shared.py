"""The official reference material beside the checkout (`../shared/fixtures`).

It is not part of the project: tests that need it skip with the reason when it is absent (a
user's clone), and fail instead when FHIR_REQUIRE_SHARED=1 (CI, see .ci/run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def shared_fixture(*parts: str) -> Path:
    """The path of a reference file; skips (or fails under CI) when it is missing."""
    path = SHARED_FIXTURES.joinpath(*parts)
    if not path.exists():
        reason = f"reference material {path} is absent (it lives in ../shared beside the clone)"
        if os.environ.get("FHIR_REQUIRE_SHARED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
