"""Extended operations (`$name`, R4 operations.html): one module per operation, registered on
the engine (`Engine.operations`) by the server or by plugins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fhir_server.engine.interaction import Context, Interaction, Outcome
from fhir_server.engine.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from fhir_server.engine.engine import Engine

Run = Callable[["Engine", UnitOfWork, Interaction, Context], Outcome]


@dataclass(frozen=True)
class Operation:
    """An operation: where it may be invoked, whether it changes data, and what it does."""

    name: str  # without the `$`
    definition: str  # canonical URL of its OperationDefinition
    run: Run
    system: bool = False
    type: bool = False
    instance: bool = False
    resource_types: frozenset[str] | None = None  # None: every type
    affects_state: bool = False

    def levels(self) -> list[str]:
        return [
            level
            for level, allowed in (
                ("system", self.system),
                ("type", self.type),
                ("instance", self.instance),
            )
            if allowed
        ]
