"""Named hook points of the interaction pipeline, in the manner of HAPI FHIR interceptors.

Cross-cutting concerns (authorisation, audit, profile validation, pathway rules) register a
callable on a point instead of changing the engine:

- `BEFORE_TRANSACTION(context, interactions)`: before the database transaction of an
  interaction opens (of a transaction Bundle: with all its entries; of a batch: each entry's):
  work whose result its reads must find committed.
- `BEFORE_INTERACTION(context, interaction)`: before anything is read or written; raise a
  `FhirError` to refuse. Runs for each entry of a batch or transaction too.
- `BEFORE_STORAGE(context, change, unit_of_work)`: inside the database transaction, with the
  resource about to be stored (mutable) and the previous version; raise to refuse.
- `AFTER_INTERACTION(context, unit_of_work, interaction, outcome)`: each interaction (each
  entry of a bundle too) once its handler returned, inside the transaction.
- `BEFORE_COMMIT(context, unit_of_work)`: after the last interaction of a unit of work, its
  index rows written; raise to roll it all back.
- `AFTER_COMMIT(context, changes)`: in-process, once the transaction is committed. Durable
  after-commit work reads the outbox instead (`fhir_server.outbox`).
- `AFTER_TRANSACTION(context, unit_of_work, error)`: after the commit, or after the rollback
  that a `FhirError` caused (`error`): work that needs a transaction of its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from enum import StrEnum
from typing import Any


class HookPoint(StrEnum):
    BEFORE_TRANSACTION = "before_transaction"
    BEFORE_INTERACTION = "before_interaction"
    BEFORE_STORAGE = "before_storage"
    AFTER_INTERACTION = "after_interaction"
    BEFORE_COMMIT = "before_commit"
    AFTER_COMMIT = "after_commit"
    AFTER_TRANSACTION = "after_transaction"


Hook = Callable[..., Any]


class Hooks:
    def __init__(self) -> None:
        self._hooks: dict[HookPoint, list[Hook]] = defaultdict(list)

    def register(self, point: HookPoint, hook: Hook) -> Hook:
        self._hooks[point].append(hook)
        return hook

    def run(self, point: HookPoint, *args: Any) -> None:
        for hook in self._hooks.get(point, ()):
            hook(*args)
