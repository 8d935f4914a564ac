"""SIGTERM to the server process drains: it stops accepting, answers every request in flight
(within the drain bound), then exits."""

from __future__ import annotations

import json
import os
import signal
import threading

import requests

from clipper_admin.deployers import python as python_deployer
from clipper_core.backends.local import SERVER_MARKER, process_alive


def slow_sum(xs):
    import time

    time.sleep(1.5)
    return [str(sum(x)) for x in xs]


def cache_lookups(conn) -> int:
    """Queries the query frontend has received (each one looks up the cache first)."""
    report = requests.get(f"http://{conn.get_query_addr()}/metrics", timeout=10).json()
    for items in report.values():
        for item in items:
            if "internal:prediction_cache_lookups" in item:
                return int(item["internal:prediction_cache_lookups"]["count"])
    raise KeyError("internal:prediction_cache_lookups")


def sigterm_in_flight(conn, helpers, n: int) -> list[tuple[int, dict]]:
    """Send ``n`` queries, SIGTERM the server once it has them all, return every answer."""
    url = f"http://{conn.get_query_addr()}/slow-app/predict"
    answers: list[object] = []

    def query(i: int) -> None:
        try:
            response = requests.post(url, json={"input": [float(i), 0.5]}, timeout=60)
            answers.append((response.status_code, response.json()))
        except requests.RequestException as exc:
            answers.append(exc)

    before = cache_lookups(conn)
    threads = [threading.Thread(target=query, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    helpers.wait_until(lambda: cache_lookups(conn) >= before + n, 30, f"{n} queries in flight")
    pid = conn.cm.server_pid()
    os.kill(pid, signal.SIGTERM)
    for thread in threads:
        thread.join(60)
    helpers.wait_until(lambda: not process_alive(pid, SERVER_MARKER), 30, "the server to exit")
    assert all(isinstance(answer, tuple) for answer in answers), answers
    assert len(answers) == n
    return answers  # type: ignore[return-value]


def test_sigterm_answers_the_requests_in_flight(start_cluster, helpers):
    conn = start_cluster("drain-test")
    python_deployer.create_endpoint(conn, "slow-app", "doubles", slow_sum, slo_micros=20_000_000)
    helpers.wait_for_prediction(conn, "slow-app", {"input": [1.0]})
    answers = sigterm_in_flight(conn, helpers, 12)
    assert all(status == 200 and not body["default"] for status, body in answers), answers

    # A drain bound shorter than the model: what is unanswered then gets 503 with Retry-After.
    config = json.loads(conn.cm.config_path.read_text())
    conn.cm.config_path.write_text(json.dumps({**config, "drain_timeout_s": 0.2}))
    conn.connect()
    helpers.wait_for_prediction(conn, "slow-app", {"input": [1.0]})
    answers = sigterm_in_flight(conn, helpers, 6)
    assert {status for status, _ in answers} <= {200, 503}, answers
    assert any(status == 503 for status, _ in answers), answers
