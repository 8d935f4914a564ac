"""The prediction cache interface.

The query frontend keys the cache by ``(model, version, generation, input bytes)``: a tuple,
so lookups are equality-checked (no hash collision can return another input's answer). The
generation changes whenever the store reports a change of the model, so a version deleted and
registered again under the same name never gets its predecessor's answers. Values
are the rendered JSON fragment of a model output. A cache only stores finished answers;
coalescing of identical in-flight queries is done by the scheduler
(:mod:`clipper_core.batching.scheduler`), and errors are never put.

A cache plugin registers its class through ``clipper_register_caches``; the cluster
configuration's ``cache`` names the one a frontend uses (``lru`` by default).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from typing import ClassVar

#: ``(model name, model version, generation, input bytes)``.
CacheKey = tuple[str, str, int, bytes]


class PredictionCache(ABC):
    """A size-bounded map from query keys to answers; ``capacity_bytes`` 0 stores nothing."""

    #: The name ``ClusterConfig.cache`` selects this cache by.
    name: ClassVar[str]

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes

    @abstractmethod
    def get(self, key: Hashable) -> bytes | None:
        """The stored answer for ``key``, or None."""

    @abstractmethod
    def put(self, key: Hashable, value: bytes) -> None:
        """Store an answer, evicting others to stay within ``capacity_bytes``."""

    @property
    @abstractmethod
    def size_bytes(self) -> int:
        """Bytes currently accounted for."""

    @abstractmethod
    def __len__(self) -> int: ...


#: What an entry costs beyond its input and answer bytes (key tuple, two bytes headers, the
#: map's slot), measured on CPython 3.11; charging it keeps ``cache_size`` an honest bound.
ENTRY_OVERHEAD_BYTES = 256


def entry_size(key: Hashable, value: bytes) -> int:
    """Bytes an entry is charged: the answer, the input bytes of its key and the overhead."""
    data = key[-1] if isinstance(key, tuple) and key and isinstance(key[-1], bytes) else b""
    return len(value) + len(data) + ENTRY_OVERHEAD_BYTES
