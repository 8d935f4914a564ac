"""The routing table follows the store's change feed one change at a time, and requests for
unknown applications cannot make the frontend read the store for each of them (issues 11, 15).

Reads are counted on the store's own SQLite connection (``set_trace_callback``), which the
frontend shares with the test; the change feed reads on a connection of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import requests

from clipper_core.frontend import query, routing
from clipper_core.frontend.routing import FEED_WAIT_S, LOOKUP_BURST, LOOKUPS_PER_S
from clipper_core.store.redis import RedisStore
from clipper_core.store.sqlite import SQLiteStore
from clipper_core.testing.servers import RedisServer
from clipper_core.types import Application, InputType

from .conftest import wait_for

Cluster = Any  # conftest.Cluster

APPS = 300


def answer(xs: Any) -> list[str]:
    return ["7"] * len(xs)


@pytest.fixture(scope="module")
def cluster(make_module_cluster: Callable[..., Cluster]) -> Cluster:
    cluster = make_module_cluster()
    cluster.add_model("routed", "1")
    cluster.start_replica("routed", "1", answer)
    for i in range(APPS):
        cluster.store.add_application(Application(f"app-{i}", InputType.DOUBLES, "D", 5_000_000))
    cluster.add_app(f"app-{APPS}")  # waits until the frontend serves it: all are applied
    return cluster


@pytest.fixture
def selects(cluster: Cluster) -> Iterator[list[str]]:
    """The SELECT statements run on the store's connection while the test runs."""
    seen: list[str] = []
    conn = cluster.store._conn
    conn.set_trace_callback(lambda sql: seen.append(sql) if sql.startswith("SELECT") else None)
    yield seen
    conn.set_trace_callback(None)


def flood(cluster: Cluster, names: int) -> list[requests.Response]:
    """POST to ``names`` unknown applications, 50 at a time."""
    def post(i: int) -> requests.Response:
        return requests.post(f"{cluster.url}/missing-{i}/predict", json={"input": [1.0]},
                             timeout=60)
    with ThreadPoolExecutor(50) as pool:
        return list(pool.map(post, range(names)))


def test_requests_for_unknown_apps_cause_a_bounded_number_of_store_reads(
        cluster: Cluster, selects: list[str]) -> None:
    started = time.monotonic()
    for response in flood(cluster, 200):
        assert response.status_code == 404
        assert response.json()["error"] == "Application not found"
    elapsed = time.monotonic() - started
    # one single-row read per lookup, within the token bucket; never the whole table
    assert len(selects) <= LOOKUP_BURST + LOOKUPS_PER_S * elapsed + 1
    assert not any("FROM applications ORDER BY" in sql for sql in selects)


def test_a_just_registered_app_is_found_by_its_first_request(cluster: Cluster) -> None:
    time.sleep(LOOKUP_BURST / LOOKUPS_PER_S)  # a full lookup budget (the test above spent it)
    cluster.store.add_application(Application("fresh", InputType.DOUBLES, "D", 5_000_000))
    response = cluster.post("/fresh/predict", {"input": [1.0]})  # before the feed delivers it
    assert response.status_code == 200, response.text
    assert response.json()["default"] is True


def test_an_app_registered_during_a_flood_is_found_by_its_first_request(
        cluster: Cluster) -> None:
    elsewhere = SQLiteStore(cluster.store.path)  # as another process registers it
    stop = threading.Event()

    def keep_flooding(worker: int) -> None:  # spends every lookup the moment it is there
        with requests.Session() as session:
            while not stop.is_set():
                session.post(f"{cluster.url}/missing-{worker}-{time.monotonic_ns()}/predict",
                             json={"input": [1.0]}, timeout=60)

    with ThreadPoolExecutor(20) as pool:
        floods = [pool.submit(keep_flooding, worker) for worker in range(20)]
        try:
            time.sleep(LOOKUP_BURST / LOOKUPS_PER_S)
            elsewhere.add_application(  # the feed brings it within its poll interval
                Application("flooded", InputType.DOUBLES, "D", 5_000_000))
            started = time.monotonic()
            response = cluster.post("/flooded/predict", {"input": [1.0]})
            waited = time.monotonic() - started
        finally:
            stop.set()
            elsewhere.close()
        for f in floods:
            f.result()
    assert response.status_code == 200, response.text
    assert waited < FEED_WAIT_S + 1.0


def test_a_registration_reads_only_what_changed(cluster: Cluster, selects: list[str]) -> None:
    cluster.store.add_application(Application("linked", InputType.DOUBLES, "D", 5_000_000))
    cluster.store.add_link("linked", "routed")
    wait_for(lambda: cluster.post("/linked/predict", {"input": [1.0]}).json().get("default")
             is False, what="the new app to be routed to its model")
    # the app, its links, a few lookups by requests that came first; not one read per app
    assert len(selects) < 50, selects


def test_changes_to_links_and_deletions_apply(cluster: Cluster) -> None:
    cluster.add_app("relinked")
    cluster.store.add_link("relinked", "routed")
    wait_for(lambda: cluster.predict("relinked", {"input": [1.0]})["default"] is False,
             what="the link to apply")
    cluster.store.delete_link("relinked", "routed")
    wait_for(lambda: cluster.predict("relinked", {"input": [1.0]})["default"] is True,
             what="the unlink to apply")
    cluster.store.delete_application("relinked")
    wait_for(lambda: cluster.post("/relinked/predict", {"input": [1.0]}).status_code == 404,
             what="the deletion to apply")


def test_a_lookup_the_store_does_not_answer_in_time_gets_a_503(
        make_cluster: Callable[..., Cluster], monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = make_cluster()
    monkeypatch.setattr(query, "LOOKUP_TIMEOUT_S", 0.5)
    stalled, release = threading.Event(), threading.Event()
    get_application = cluster.store.get_application

    def stalling(name: str) -> Any:  # a store that hangs (Redis unreachable, a stuck disk)
        if name == "slow":
            stalled.set()
            release.wait(30)
        return get_application(name)

    monkeypatch.setattr(cluster.store, "get_application", stalling)
    cluster.store.add_application(Application("slow", InputType.DOUBLES, "D", 5_000_000))
    try:
        started = time.monotonic()
        response = cluster.post("/slow/predict", {"input": [1.0]})
        waited = time.monotonic() - started
    finally:
        release.set()
    assert stalled.is_set()
    assert response.status_code == 503, response.text
    assert "Looking up application 'slow' in the state store took longer than 0.5 s" \
        in response.json()["cause"]
    assert response.headers["Retry-After"] == "1"
    assert waited < 5
    wait_for(lambda: cluster.post("/slow/predict", {"input": [1.0]}).status_code == 200,
             what="the application once the store answers")



@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.mark.redis
def test_a_failed_store_read_is_retried_without_another_change(
        redis_server: RedisServer, make_cluster: Callable[..., Cluster],
        caplog: pytest.LogCaptureFixture) -> None:
    """A store that refuses reads for a while (a real Redis whose ACL revokes the frontend's
    read commands): the change the frontend failed to read applies once reads work again,
    with no further change to prompt it. (The Redis server outlives the cluster.)"""
    admin = redis.Redis(host=redis_server.host, port=redis_server.port)
    admin.execute_command("ACL", "SETUSER", "frontend", "on", ">pw", "~*", "&*", "+@all")
    cluster = make_cluster(
        store_url=f"redis://frontend:pw@{redis_server.host}:{redis_server.port}/0")
    cluster.add_app("doomed")
    elsewhere = RedisStore.from_url(redis_server.url)  # another process, another user
    try:
        admin.execute_command("ACL", "SETUSER", "frontend", "-@read")
        with caplog.at_level(logging.ERROR, logger=routing.__name__):
            elsewhere.delete_application("doomed")
            wait_for(lambda: "reading applications from" in caplog.text,
                     what="the frontend's read of the deletion to fail")
        assert "no permissions to run the 'hget' command" in caplog.text
        assert cluster.post("/doomed/predict", {"input": [1.0]}).status_code == 200
        assert int(cluster.metric("internal:store_read_failures")["count"]) >= 1
        admin.execute_command("ACL", "SETUSER", "frontend", "+@read")  # reads work again
        started = time.monotonic()
        wait_for(lambda: cluster.post("/doomed/predict", {"input": [1.0]}).status_code == 404,
                 timeout=routing.RETRY_MAX_S + 5, what="the deletion to apply")
        assert time.monotonic() - started < routing.RETRY_FIRST_S * 4
    finally:
        admin.execute_command("ACL", "SETUSER", "frontend", "+@read")  # for the teardown
        elsewhere.close()
        admin.close()
