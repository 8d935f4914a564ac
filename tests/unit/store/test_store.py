"""One suite for every built-in StateStore: SQLite and a real redis-server (see conftest)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from clipper_core.exceptions import ConflictError, NotFoundError, PluginError, ValidationError
from clipper_core.store import Change, StateStore, open_store
from clipper_core.store.redis import RedisStore
from clipper_core.store.sqlite import SQLiteStore
from clipper_core.testing.servers import wait_until
from clipper_core.types import Application, InputType, ModelVersion, Replica


def app(name: str, input_type: InputType = InputType.DOUBLES) -> Application:
    return Application(name, input_type, f"default of {name}", 100_000)


def model(name: str, version: str, input_type: InputType = InputType.DOUBLES,
          **kwargs) -> ModelVersion:
    return ModelVersion(name, version, input_type, **kwargs)


class Recorder:
    """A change-feed callback that records what it receives and from which thread."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.threads: set[str] = set()

    def __call__(self, change: Change) -> None:
        self.threads.add(threading.current_thread().name)
        self.changes.append(change)

    def wait(self, *expected: Change, timeout_s: float = 5.0) -> None:
        """Wait until ``expected`` were received, in this order, after what came before."""
        wait_until(lambda: _contains_in_order(self.changes, expected), timeout_s,
                   f"changes {expected} (got {self.changes})")


def _contains_in_order(seen: list[Change], expected: tuple[Change, ...]) -> bool:
    it = iter(seen)
    return all(any(c == e for c in it) for e in expected)


#: How another process opens the store (built-in plugins only: framework plugins import slowly).
OPEN_IN_SUBPROCESS = """
from clipper_core.plugins import get_plugin_manager
from clipper_core.store import open_store
def open_url(url):
    return open_store(url, get_plugin_manager(load_entrypoints=False))
"""


def run_python(code: str) -> None:
    """Run ``code`` in a fresh interpreter (another process using the same store)."""
    source = OPEN_IN_SUBPROCESS + textwrap.dedent(code)
    subprocess.run([sys.executable, "-c", source], check=True, timeout=60)


# -- opening ------------------------------------------------------------------------------
def test_open_store_picks_the_class_by_scheme(store: StateStore, store_url: str) -> None:
    expected = SQLiteStore if store_url.startswith("sqlite") else RedisStore
    assert type(store) is expected
    assert store.name == store_url.partition(":")[0]


def test_open_store_rejects_unknown_scheme(builtin_pm) -> None:
    with pytest.raises(PluginError, match=r"'mongodb://x/y'.*No store named 'mongodb'.*redis"):
        open_store("mongodb://x/y", builtin_pm)
    with pytest.raises(ValidationError, match="Expected <scheme>://"):
        open_store("state.db", builtin_pm)


@pytest.mark.parametrize("url", ["sqlite://relative.db", "sqlite:///", "postgres:///x"])
def test_sqlite_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValidationError, match=r"Expected sqlite:///<absolute path>"):
        SQLiteStore.from_url(url)


def test_redis_rejects_bad_urls() -> None:
    with pytest.raises(ValidationError, match=r"Expected redis://host:port/db"):
        RedisStore.from_url("http://localhost:6379/0")


def test_sqlite_creates_parent_dirs_and_uses_wal(tmp_path) -> None:
    path = tmp_path / "a" / "b" / "state.db"
    store = SQLiteStore.from_url(f"sqlite:///{path}")
    store.add_application(app("x"))
    store.close()
    assert path.is_file()
    import sqlite3

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_accepts_four_slash_urls(tmp_path) -> None:
    store = SQLiteStore.from_url(f"sqlite:///{tmp_path}/s.db")  # tmp_path is absolute: 4 slashes
    assert str(store.path) == f"{tmp_path}/s.db"
    store.close()


# -- applications -------------------------------------------------------------------------
def test_applications(store: StateStore) -> None:
    assert store.list_applications() == []
    assert store.get_application("a") is None
    a = Application("a", InputType.STRINGS, "", 5, policy="other")
    store.add_application(a)
    store.add_application(app("c"))
    store.add_application(app("b"))
    assert store.get_application("a") == a
    assert [x.name for x in store.list_applications()] == ["a", "c", "b"]
    with pytest.raises(ConflictError, match="application 'a' already exists"):
        store.add_application(app("a"))
    assert store.get_application("a") == a
    store.delete_application("c")
    assert [x.name for x in store.list_applications()] == ["a", "b"]
    with pytest.raises(NotFoundError, match="Application 'c' does not exist"):
        store.delete_application("c")


def test_readding_an_app_does_not_resurrect_its_links(store: StateStore) -> None:
    store.add_application(app("a"))
    store.add_link("a", "m")
    store.delete_application("a")
    assert store.get_links("a") == []
    assert store.apps_linked_to("m") == []
    store.add_application(app("a"))
    assert store.get_links("a") == []
    assert store.list_applications()[-1].name == "a"


def test_names_with_odd_characters_round_trip(store: StateStore) -> None:
    for name in ["a b", "ünï", "x:y", "a,b", '"q"', "links", "{}"]:
        store.add_application(app(name))
        store.add_model_version(model(name, name))
        store.add_link(name, name)
        assert store.get_application(name) == app(name)
        assert store.get_model_version(name, name) == model(name, name)
        assert store.get_links(name) == [name]
    assert store.get_model_version("x", "y:x") is None


# -- links --------------------------------------------------------------------------------
def test_links(store: StateStore) -> None:
    assert store.get_links("nope") == []
    with pytest.raises(NotFoundError, match="No app with name 'a' exists"):
        store.add_link("a", "m")
    store.add_application(app("a"))
    store.add_application(app("b"))
    store.add_link("b", "m")
    store.add_link("a", "n")
    store.add_link("a", "m")
    assert store.get_links("a") == ["n", "m"]
    assert store.apps_linked_to("m") == ["b", "a"]
    assert store.apps_linked_to("zzz") == []
    with pytest.raises(ConflictError, match="'m' is already linked to 'a'"):
        store.add_link("a", "m")
    store.delete_link("a", "n")
    assert store.get_links("a") == ["m"]
    with pytest.raises(NotFoundError, match="nonexistent link between app a and model n"):
        store.delete_link("a", "n")
    with pytest.raises(NotFoundError):
        store.delete_link("nope", "m")
    store.delete_application("a")
    assert store.apps_linked_to("m") == ["b"]


# -- model versions -----------------------------------------------------------------------
def test_model_versions(store: StateStore) -> None:
    assert store.list_model_versions() == []
    assert store.get_current_version("m") is None
    assert store.activation_order("m") == []
    full = model("m", "1", InputType.BYTES, labels=("a", "b"), image="img:1", batch_size=8,
                 model_data_path="/data")
    store.add_model_version(full)
    assert store.get_model_version("m", "1") == full
    assert store.get_current_version("m") == "1"
    store.add_model_version(model("n", "1"))
    store.add_model_version(model("m", "2"))
    assert store.get_current_version("m") == "2"  # every new version becomes current
    assert [x.key for x in store.list_model_versions()] == ["m:1", "n:1", "m:2"]
    assert [x.key for x in store.list_model_versions("m")] == ["m:1", "m:2"]
    assert store.list_model_versions("zzz") == []
    assert store.get_model_version("m", "3") is None
    with pytest.raises(ConflictError, match="model with name 'm' and version '1' already exists"):
        store.add_model_version(model("m", "1", InputType.STRINGS))
    assert store.get_model_version("m", "1") == full
    assert store.get_current_version("m") == "2"


def test_current_version_and_activation_order(store: StateStore) -> None:
    for version in ["1", "2", "3"]:
        store.add_model_version(model("m", version))
    assert store.activation_order("m") == ["3", "2", "1"]
    store.set_current_version("m", "1")
    assert store.get_current_version("m") == "1"
    assert store.activation_order("m") == ["1", "3", "2"]
    with pytest.raises(NotFoundError, match="Cannot set non-existent version '9'"):
        store.set_current_version("m", "9")
    with pytest.raises(NotFoundError):
        store.set_current_version("zzz", "1")
    assert store.get_current_version("m") == "1"
    store.delete_model_version("m", "3")
    assert store.get_current_version("m") == "1"
    assert store.activation_order("m") == ["1", "2"]
    store.delete_model_version("m", "1")  # the current one: no version is current any more
    assert store.get_current_version("m") is None
    assert store.activation_order("m") == ["2"]
    assert [x.version for x in store.list_model_versions("m")] == ["2"]
    with pytest.raises(NotFoundError, match="model with name 'm' and version '1' does not exist"):
        store.delete_model_version("m", "1")
    store.set_current_version("m", "2")
    assert store.get_current_version("m") == "2"


# -- replicas -----------------------------------------------------------------------------
def test_traffic_round_trips_and_publishes_its_model(store: StateStore) -> None:
    rec = Recorder()
    sub = store.subscribe(rec)
    assert store.get_traffic("m") is None
    traffic = '{"split":{"1":90,"2":10},"shadows":["3"],"previous":"1"}'
    store.set_traffic("m", traffic)
    assert store.get_traffic("m") == traffic
    store.set_traffic("m", None)
    assert store.get_traffic("m") is None
    rec.wait(Change("model", "m"), Change("model", "m"))
    sub.close()


def test_replicas(store: StateStore) -> None:
    assert store.list_replicas() == []
    r0 = Replica("m", "1", 0, InputType.DOUBLES, "fe-a")
    r1 = Replica("m", "1", 1, InputType.DOUBLES, "fe-b")
    r2 = Replica("n", "2", 0, InputType.STRINGS, "fe-a")
    for r in (r0, r1, r2):
        store.add_replica(r)
    assert store.list_replicas() == [r0, r1, r2]
    store.add_replica(r0)  # re-adding replaces, no duplicate
    assert sorted(store.list_replicas(), key=repr) == sorted([r0, r1, r2], key=repr)
    store.remove_replica(r1)
    store.remove_replica(r1)  # removing twice is harmless
    assert r1 not in store.list_replicas()
    store.add_replica(r1)
    store.clear_replicas("fe-a")
    assert store.list_replicas() == [r1]
    store.clear_replicas("nobody")
    assert store.list_replicas() == [r1]


def test_next_replica_id(store: StateStore) -> None:
    assert [store.next_replica_id("m", "1") for _ in range(3)] == [0, 1, 2]
    assert store.next_replica_id("m", "2") == 0
    assert store.next_replica_id("n", "1") == 0
    assert store.next_replica_id("m", "1") == 3


def test_concurrent_threads(store: StateStore) -> None:
    def work(i: int) -> list[int]:
        store.add_application(app(f"app-{i}"))
        return [store.next_replica_id("m", "1") for _ in range(10)]

    with ThreadPoolExecutor(8) as pool:
        ids = [x for chunk in pool.map(work, range(16)) for x in chunk]
    assert sorted(ids) == list(range(160))
    assert len(store.list_applications()) == 16


def test_concurrent_processes(store: StateStore, store_url: str) -> None:
    code = OPEN_IN_SUBPROCESS + textwrap.dedent(f"""
        import sys
        from clipper_core.types import Application, InputType
        s = open_url({store_url!r})
        ids = [s.next_replica_id("m", "1") for _ in range(25)]
        for i in range(10):
            s.add_application(Application(f"p{{sys.argv[1]}}-{{i}}", InputType.BYTES, "", 1))
        print(" ".join(map(str, ids)))
        s.close()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)],
                              stdout=subprocess.PIPE, text=True) for n in range(3)]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    ids = sorted(int(x) for out in outputs for x in out.split())
    assert ids == list(range(75))
    assert len(store.list_applications()) == 30


# -- persistence --------------------------------------------------------------------------
def test_state_survives_reopening(store: StateStore, store_url: str, builtin_pm) -> None:
    store.add_application(app("a"))
    store.add_model_version(model("m", "1", labels=("x",)))
    store.add_model_version(model("m", "2"))
    store.set_current_version("m", "1")
    store.add_link("a", "m")
    store.add_replica(Replica("m", "1", 0, InputType.DOUBLES, "fe"))
    store.next_replica_id("m", "1")
    store.close()
    reopened = open_store(store_url, builtin_pm)
    try:
        assert reopened.list_applications() == [app("a")]
        assert reopened.get_links("a") == ["m"]
        assert reopened.list_model_versions() == [model("m", "1", labels=("x",)),
                                                  model("m", "2")]
        assert reopened.get_current_version("m") == "1"
        assert reopened.activation_order("m") == ["1", "2"]
        assert reopened.list_replicas() == [Replica("m", "1", 0, InputType.DOUBLES, "fe")]
        assert reopened.next_replica_id("m", "1") == 1
    finally:
        reopened.close()


def test_redis_prefixes_isolate_clusters(redis_server) -> None:
    one = RedisStore.from_url(f"{redis_server.url}?prefix=iso-one:")
    two = RedisStore.from_url(f"{redis_server.url}?prefix=iso-two:")
    try:
        one.add_application(app("a"))
        assert two.list_applications() == []
        two.add_application(app("a"))  # no conflict across prefixes
        assert one.prefix == "iso-one:"
    finally:
        one.close()
        two.close()


# -- change feed --------------------------------------------------------------------------
def test_every_write_publishes_its_change_in_order(store: StateStore) -> None:
    rec = Recorder()
    store.subscribe(rec)
    r = Replica("m", "1", 0, InputType.DOUBLES, "fe")
    store.add_application(app("a"))
    store.add_model_version(model("m", "1"))
    store.add_model_version(model("m", "2"))
    store.set_current_version("m", "1")
    store.add_link("a", "m")
    store.delete_link("a", "m")
    store.add_replica(r)
    store.remove_replica(r)
    store.add_replica(r)
    store.clear_replicas("fe")
    store.delete_model_version("m", "2")
    store.add_link("a", "m")
    store.delete_application("a")
    expected = [
        Change("application", "a"), Change("model", "m"), Change("model", "m"),
        Change("model", "m"), Change("link", "a"), Change("link", "a"),
        Change("replica", "m"), Change("replica", "m"), Change("replica", "m"),
        Change("replica", "m"), Change("model", "m"), Change("link", "a"),
        Change("application", "a"), Change("link", "a"),
    ]
    wait_until(lambda: len(rec.changes) >= len(expected), what="all changes")
    assert rec.changes == expected
    assert threading.current_thread().name not in rec.threads  # delivered from a background thread


def test_failed_writes_and_reads_publish_nothing(store: StateStore) -> None:
    store.add_application(app("a"))
    rec = Recorder()
    store.subscribe(rec)
    with pytest.raises(ConflictError):
        store.add_application(app("a"))
    with pytest.raises(NotFoundError):
        store.delete_link("a", "m")
    store.list_applications()
    store.next_replica_id("m", "1")
    store.remove_replica(Replica("m", "1", 5, InputType.DOUBLES))
    store.add_application(app("b"))  # a marker: everything before it is delivered first
    rec.wait(Change("application", "b"))
    assert rec.changes == [Change("application", "b")]


def test_second_store_object_sees_changes(store: StateStore, store_url: str,
                                         builtin_pm) -> None:
    other = open_store(store_url, builtin_pm)
    try:
        rec = Recorder()
        other.subscribe(rec)
        store.add_application(app("a"))
        store.add_link("a", "m")
        rec.wait(Change("application", "a"), Change("link", "a"))
        assert other.get_links("a") == ["m"]
    finally:
        other.close()


def test_changes_from_another_process(store: StateStore, store_url: str) -> None:
    rec = Recorder()
    store.subscribe(rec)
    run_python(f"""
        from clipper_core.types import Application, InputType, ModelVersion
        s = open_url({store_url!r})
        s.add_application(Application("remote", InputType.BYTES, "d", 1000))
        s.add_model_version(ModelVersion("rm", "7", InputType.BYTES))
        s.close()
    """)
    rec.wait(Change("application", "remote"), Change("model", "rm"))
    assert store.get_current_version("rm") == "7"


def test_unsubscribe_and_failing_subscribers(store: StateStore) -> None:
    kept, dropped = Recorder(), Recorder()

    def broken(change: Change) -> None:
        raise RuntimeError("subscriber bug")

    store.subscribe(broken)
    sub = store.subscribe(dropped)
    store.subscribe(kept)
    store.add_application(app("a"))
    dropped.wait(Change("application", "a"))
    sub.close()
    sub.close()
    store.add_application(app("b"))
    kept.wait(Change("application", "a"), Change("application", "b"))
    store.add_application(app("c"))
    kept.wait(Change("application", "c"))
    assert dropped.changes == [Change("application", "a")]


def test_sqlite_lagging_subscriber_gets_resync(tmp_path, monkeypatch) -> None:
    import clipper_core.store.sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "CHANGES_KEPT", 5)
    url = f"sqlite:///{tmp_path}/state.db"
    reader, writer = SQLiteStore.from_url(url), SQLiteStore.from_url(url)
    release = threading.Event()
    rec = Recorder()

    def slow(change: Change) -> None:
        rec(change)
        release.wait(10)

    try:
        reader.subscribe(slow)
        writer.add_application(app("first"))
        rec.wait(Change("application", "first"))  # the reader is now stuck in the callback
        for i in range(250):
            writer.add_application(app(f"a{i}"))
        release.set()
        rec.wait(Change("resync", ""), Change("application", "a249"))
        assert Change("application", "a0") not in rec.changes  # pruned before it was read
    finally:
        release.set()
        reader.close()
        writer.close()


def test_redis_resync_after_lost_connection() -> None:
    from clipper_core.testing.servers import RedisServer

    with RedisServer() as server:
        store = RedisStore.from_url(server.url)
        try:
            rec = Recorder()
            store.subscribe(rec)
            store.add_application(app("before"))
            rec.wait(Change("application", "before"))
            server.stop()
            server.start()
            rec.wait(Change("resync", ""), timeout_s=10)
            store.add_application(app("after"))
            rec.wait(Change("resync", ""), Change("application", "after"))
            assert rec.changes.count(Change("resync", "")) == 1
        finally:
            store.close()


def test_closed_store_stops_its_feed(store_url: str, builtin_pm) -> None:
    first = open_store(store_url, builtin_pm)
    rec = Recorder()
    first.subscribe(rec)
    first.close()
    first.close()  # idempotent
    second = open_store(store_url, builtin_pm)
    try:
        second.add_application(app("late"))
        marker = Recorder()
        second.subscribe(marker)
        second.add_application(app("marker"))
        marker.wait(Change("application", "marker"))
        assert rec.changes == []
    finally:
        second.close()
