"""Keys of new resources on PostgreSQL, taken from the `resource` table's sequence ahead of
their rows. A new resource's version and index rows need its key: inserted at once, its row
cost a round trip of its own; with its key known beforehand, the row goes in the round trip
of the others (`Repository.flush`)."""

from __future__ import annotations

import threading
from collections import deque

from sqlalchemy import Connection, text

_BLOCK = text("SELECT nextval('resource_pk_seq') FROM generate_series(1, :n)")
_PAST = text("SELECT setval('resource_pk_seq', :key)")


class ResourceKeys:
    """Values of `resource_pk_seq`, taken a block at a time and handed out by one process.
    The sequence is the only source of keys, so they are unique; gaps are harmless (a
    sequence has them anyway). After `TRUNCATE ... RESTART IDENTITY` the sequence would hand
    out keys given before: the next block notices, and moves the sequence past them."""

    def __init__(self, block: int = 64) -> None:
        self.block = block
        self._free: deque[int] = deque()
        self._highest = 0
        self._lock = threading.Lock()

    def take(self, conn: Connection) -> int:
        with self._lock:
            if not self._free:
                self._refill(conn)
            key = self._free.popleft()
            self._highest = max(self._highest, key)
            return key

    def _refill(self, conn: Connection) -> None:
        keys = sorted(conn.execute(_BLOCK, {"n": self.block}).scalars())
        if keys[0] <= self._highest:  # the sequence was restarted
            conn.execute(_PAST, {"key": self._highest})
            keys = sorted(conn.execute(_BLOCK, {"n": self.block}).scalars())
        self._free.extend(keys)
