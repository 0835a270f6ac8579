"""A cachetools cache shared by the threads of a process: cachetools caches are not
thread-safe, and the engine runs requests on a pool of threads."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from cachetools import Cache

K = TypeVar("K")
V = TypeVar("V")


class Kept(Generic[K, V]):
    """`cache` (an LRU, TTL or TLRU cache of cachetools) behind a lock."""

    def __init__(self, cache: Cache[K, V]) -> None:
        self._cache = cache
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._cache.get(key)

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._cache[key] = value
