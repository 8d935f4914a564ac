"""The Redis change feed survives what is not a lost connection: garbage published on its
channel, and a server that refuses the subscription for a while (real redis-server)."""

from __future__ import annotations

import threading

import pytest
import redis

from clipper_core.store import Change
from clipper_core.store.redis import RedisStore
from clipper_core.testing.servers import RedisServer, wait_until
from clipper_core.types import Application, InputType

pytestmark = pytest.mark.redis


class Recorder:
    """A change-feed callback that records what it receives."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.lock = threading.Lock()

    def __call__(self, change: Change) -> None:
        with self.lock:
            self.changes.append(change)

    def wait(self, change: Change, timeout_s: float = 15.0) -> None:
        wait_until(lambda: change in self.changes, timeout_s, f"{change} (got {self.changes})")


def app(name: str) -> Application:
    return Application(name, InputType.DOUBLES, "d", 100000)


def refusals(admin: redis.Redis, channel: str) -> int:
    """How many times the server refused access to ``channel`` (its ACL log)."""
    return sum(entry[b"count"] for entry in admin.execute_command("ACL", "LOG")
               if entry[b"object"] == channel.encode())


@pytest.fixture
def feed():
    with RedisServer() as server:
        store = RedisStore.from_url(server.url)
        admin = redis.Redis(host=server.host, port=server.port)
        rec = Recorder()
        store.subscribe(rec)
        try:
            yield store, admin, rec
        finally:
            store.close()
            admin.close()


def test_garbage_on_the_channel_is_skipped(feed) -> None:
    store, admin, rec = feed
    for junk in (b"not json", b"[1,2,3]", b'{"a": 1}', b"\xff\xfe", b'["only one"]', b"[1, 2]"):
        admin.publish(store.channel, junk)
    store.add_application(app("after-garbage"))
    rec.wait(Change("application", "after-garbage"))
    assert all(isinstance(c.kind, str) and isinstance(c.name, str) for c in rec.changes)


def test_refused_subscription_is_retried_and_resyncs(feed) -> None:
    store, admin, rec = feed
    # The server refuses SUBSCRIBE (NOPERM, a ResponseError, not a connection error) and
    # drops the feed's connection: the listener must keep retrying, not die.
    admin.execute_command("ACL", "SETUSER", "default", "resetchannels")
    admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    wait_until(lambda: not admin.pubsub_numsub(store.channel)[0][1], 10, "the feed to drop")
    wait_until(lambda: refusals(admin, store.channel) >= 2, 15, "SUBSCRIBE retried after NOPERM")
    admin.execute_command("ACL", "SETUSER", "default", "allchannels")
    rec.wait(Change("resync", ""))
    store.add_application(app("later"))
    rec.wait(Change("application", "later"))
