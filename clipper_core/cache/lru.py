"""The built-in least-recently-used prediction cache (``cache = "lru"``)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from clipper_core.cache.api import PredictionCache, entry_size
from clipper_core.hookspecs import hookimpl


class LRUCache(PredictionCache):
    """An ordered dict; a hit moves the entry to the end, eviction pops from the front."""

    name = "lru"

    def __init__(self, capacity_bytes: int) -> None:
        super().__init__(capacity_bytes)
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0

    def get(self, key: Hashable) -> bytes | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: bytes) -> None:
        size = entry_size(key, value)
        if size > self.capacity_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= entry_size(key, old)
        entries = self._entries
        while self._size + size > self.capacity_bytes:
            evicted_key, evicted = entries.popitem(last=False)
            self._size -= entry_size(evicted_key, evicted)
        entries[key] = value
        self._size += size

    @property
    def size_bytes(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._entries)


@hookimpl
def clipper_register_caches() -> list[type[PredictionCache]]:
    return [LRUCache]
