"""The assembled server: settings, database, search, hooks, plugins and the engine, built
once per process and shared by every door (HTTP, MLLP, workers)."""

from __future__ import annotations

from fhir_server.engine.engine import Engine
from fhir_server.engine.hooks import Hooks
from fhir_server.plugins import PLUGIN_GROUP, registrations
from fhir_server.search.service import Search
from fhir_server.settings import Settings
from fhir_server.storage.database import Database
from fhir_server.storage.migrate import upgrade


class Server:
    def __init__(self, settings: Settings, load_plugins: bool = True) -> None:
        self.settings = settings
        self.database = Database(settings.database_url, settings.db_pool_size)
        if settings.migrate_on_start:
            upgrade(self.database)
        self.hooks = Hooks()
        self.search = Search(settings)
        self.engine = Engine(self.database, settings, self.search, self.hooks)
        if load_plugins:
            for register in registrations(PLUGIN_GROUP):
                register(self)

    def add_outbox_consumer(self, name: str) -> None:
        """Every change committed from now on is queued for consumer `name` (outbox)."""
        if name not in self.engine.outbox_consumers:
            self.engine.outbox_consumers.append(name)

    def close(self) -> None:
        self.database.dispose()
