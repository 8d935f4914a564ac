"""Redis restarted under the Docker backend: queries keep being answered, nothing registered is
lost (append-only file), and the frontends see changes again without a restart."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from clipper_admin import ClipperConnection
from clipper_admin.deployers import python as python_deployer
from clipper_core.backends.docker import CLIPPER_REDIS_CONTAINER_LABEL

pytestmark = pytest.mark.docker

QUERY = {"input": [1.0, 2.0]}


def test_redis_restart_under_load(shared_conn: ClipperConnection, dh: Any) -> None:
    python_deployer.create_endpoint(shared_conn, "redis-restart-app", "doubles",
                                    lambda xs: [sum(x) for x in xs], default_output="-1.0",
                                    slo_micros=1_000_000)
    assert dh.wait_for_prediction(shared_conn, "redis-restart-app", QUERY)["output"] == 3.0
    before = (shared_conn.get_all_apps(verbose=True), shared_conn.get_all_models(verbose=True))
    (redis,) = dh.cluster_containers(shared_conn, CLIPPER_REDIS_CONTAINER_LABEL)
    url = f"http://{shared_conn.get_query_addr()}/redis-restart-app/predict"
    outcomes: list[object] = []
    stop = threading.Event()

    def load() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                outcomes.append(session.post(url, json=QUERY, timeout=30).status_code)
            except requests.RequestException as exc:
                outcomes.append(exc)
            time.sleep(0.05)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        redis.restart(timeout=5)
        seen = len(outcomes)
        deadline = time.monotonic() + 60
        while len(outcomes) < seen + 20 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(60)
    assert outcomes and all(status in (200, 503) for status in outcomes), outcomes
    assert (shared_conn.get_all_apps(verbose=True),
            shared_conn.get_all_models(verbose=True)) == before
    # The query frontend follows the store again: a new application gets served.
    shared_conn.register_application("after-redis-restart", "doubles", "d", 100000)
    deadline = time.monotonic() + 60
    while dh.predict(shared_conn, "after-redis-restart", QUERY).status_code == 404:
        assert time.monotonic() < deadline, "the frontend never saw the new application"
        time.sleep(0.5)
    assert dh.wait_for_prediction(shared_conn, "redis-restart-app", QUERY)["output"] == 3.0
