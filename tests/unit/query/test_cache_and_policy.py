"""The LRU prediction cache and the default selection policy, resolved through the plugins."""

from __future__ import annotations

import random

from clipper_core import plugins
from clipper_core.cache.api import entry_size
from clipper_core.cache.lru import LRUCache
from clipper_core.selection.default import DefaultPolicy


def key(data: bytes) -> tuple[str, str, int, bytes]:
    return ("m", "1", 3, data)


def test_registered_through_the_hooks() -> None:
    pm = plugins.get_plugin_manager(load_entrypoints=False)
    assert plugins.caches(pm).get("lru") is LRUCache
    assert plugins.selection_policies(pm).get("default") is DefaultPolicy


def test_hit_miss_and_equality_checked_keys() -> None:
    cache = LRUCache(1000)
    cache.put(key(b"a"), b"1")
    assert cache.get(key(b"a")) == b"1"
    assert cache.get(key(b"b")) is None
    assert cache.get(("m", "2", 3, b"a")) is None  # another version
    assert cache.get(("m", "1", 2, b"a")) is None  # another input type


def test_bounded_in_bytes_evicting_least_recently_used() -> None:
    cache = LRUCache(3 * entry_size(key(b"a"), b"xxxx"))
    for name in (b"a", b"b", b"c"):
        cache.put(key(name), b"xxxx")
    assert cache.get(key(b"a")) == b"xxxx"  # a is now the most recently used
    cache.put(key(b"d"), b"xxxx")
    assert cache.get(key(b"b")) is None
    assert {k for k in (b"a", b"c", b"d") if cache.get(key(k))} == {b"a", b"c", b"d"}
    assert cache.size_bytes <= cache.capacity_bytes
    assert len(cache) == 3


def test_entry_larger_than_the_cache_and_zero_capacity() -> None:
    cache = LRUCache(10)
    cache.put(key(b"a"), b"x" * 100)
    assert cache.get(key(b"a")) is None
    empty = LRUCache(0)
    empty.put(key(b""), b"1")
    assert len(empty) == 0 and empty.size_bytes == 0


def test_replacing_an_entry_keeps_the_accounting() -> None:
    cache = LRUCache(2 * entry_size(key(b"a"), b"1234"))
    cache.put(key(b"a"), b"12")
    cache.put(key(b"a"), b"1234")
    assert cache.size_bytes == entry_size(key(b"a"), b"1234")


def test_default_policy_picks_the_first_candidate() -> None:
    policy = DefaultPolicy()
    assert list(policy.select(None, ["m:1", "n:1"], random.Random())) == ["m:1"]
    assert not policy.routes_per_query and not policy.learns


def test_cached_fragments_do_not_keep_orjson_buffers() -> None:
    """A cached answer costs about its size, not the 4 KiB buffer orjson allocates."""
    import tracemalloc

    from clipper_core.frontend.codec import render_output

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [render_output(b"%d.5" % i) for i in range(1000)]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == 1000
    assert grown < 1000 * 200
