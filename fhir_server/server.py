"""The assembled server: settings, database, search, hooks, plugins and the engine, built
once per process and shared by every door (HTTP, MLLP, workers)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from fhir_server import conformance
from fhir_server.engine.engine import Engine
from fhir_server.engine.hooks import HookPoint, Hooks
from fhir_server.engine.interaction import Context
from fhir_server.engine.unit_of_work import Change
from fhir_server.operations import validate as validate_operation
from fhir_server.operations.meta import META
from fhir_server.outbox import OutboxConsumer, OutboxDispatcher, OutboxWorker
from fhir_server.plugins import PLUGIN_GROUP, registrations
from fhir_server.search.backlog import Backlog
from fhir_server.search.service import Search
from fhir_server.security import policy, relations
from fhir_server.settings import Settings
from fhir_server.storage.database import Database
from fhir_server.storage.migrate import upgrade
from fhir_server.validation import hook as validation_hook

log = logging.getLogger(__name__)


class PeriodicJob:
    """Work a plugin runs every `interval` seconds in a background thread (a deadline sweep,
    for instance), from when the server starts its outbox worker until it closes."""

    def __init__(self, name: str, interval: float, run: Callable[[], object]) -> None:
        self.name = name
        self.interval = interval
        self.run = run
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        if not (self.thread.is_alive() or self.stopping.is_set()):
            self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.run()
            except Exception:  # the next round retries; only the kind of failure is logged
                log.exception("periodic job %s failed", self.name)
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(30)


class Server:
    def __init__(
        self, settings: Settings, load_plugins: bool = True, load_conformance: bool = True
    ) -> None:
        self.settings = settings
        self.database = Database(settings.database_url, settings.db_pool_size)
        if settings.migrate_on_start:
            upgrade(self.database)
        self.hooks = Hooks()
        self.search = Search(settings)
        self.engine = Engine(self.database, settings, self.search, self.hooks)
        self.engine.register_operation(META)
        self.backlog = Backlog(self.engine, settings.index_backlog_seconds)
        self.hooks.register(HookPoint.BEFORE_TRANSACTION, self.backlog.before_transaction)
        # Every process keeps the relation epoch, whether it checks access or not.
        self.hooks.register(HookPoint.BEFORE_COMMIT, lambda _context, uow: relations.bump(uow))
        if settings.security_enabled:  # first: nothing is validated for a caller refused
            policy.install(self)
        self.validation = validation_hook.install(self)
        self.engine.register_operation(validate_operation.make(self.validation))
        self.consumers: list[OutboxConsumer] = []
        self.worker: OutboxWorker | None = None
        self.periodic_jobs: list[PeriodicJob] = []
        if settings.index_backlog_seconds > 0:
            self.add_periodic_job(
                "index-backlog",
                settings.index_backlog_seconds,
                self.backlog.in_background,
            )
        conformance.install(self)
        if load_conformance:
            conformance.load_conformance(self)
        if load_plugins:
            for register in registrations(PLUGIN_GROUP):
                register(self)

    def add_outbox_consumer(self, consumer: OutboxConsumer) -> None:
        """Every change committed from now on to a resource of the consumer's types is queued
        for it in the outbox."""
        self.consumers.append(consumer)
        self.engine.outbox_consumers.append((consumer.name, consumer.resource_types))

    def dispatcher(self) -> OutboxDispatcher:
        return OutboxDispatcher(self.engine, self.consumers)

    def add_periodic_job(self, name: str, interval: float, run: Callable[[], object]) -> None:
        """Run `run` every `interval` seconds once the background work starts
        (`start_outbox_worker`: the API process of the embedded default, or a worker)."""
        self.periodic_jobs.append(PeriodicJob(name, interval, run))

    def start_outbox_worker(self) -> None:
        """Dispatch outbox events in a background thread, woken after each commit that queued
        some (it polls too, for events of other processes and retries), and start the periodic
        jobs."""
        if self.worker is None and self.consumers:
            worker = self.worker = OutboxWorker(self.dispatcher())
            handled = [consumer.resource_types for consumer in self.consumers]

            def wake(_context: Context, changes: list[Change]) -> None:
                if any(t is None or c.type in t for c in changes for t in handled):
                    worker.wake.set()

            self.hooks.register(HookPoint.AFTER_COMMIT, wake)
            self.worker.start()
        for job in self.periodic_jobs:
            job.start()

    def close(self) -> None:
        for job in self.periodic_jobs:
            job.stop()
        if self.worker is not None:
            self.worker.stop()
        self.database.dispose()
