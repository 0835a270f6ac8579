"""One validator for the whole package: building it compiles every shipped profile."""

from __future__ import annotations

import pytest

from fhir_server.validation import Validator


@pytest.fixture(scope="session")
def validator() -> Validator:
    return Validator()
