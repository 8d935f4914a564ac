"""Background query load for fault tests: every query must get an answer.

``QueryLoad`` sends predictions from a few threads while a test kills replicas or frontends,
then the test checks that each answer is a prediction or the default output.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests


class QueryLoad:
    """Queries ``app`` from a few threads until stopped; records every answer.

    A query whose connection fails before an answer (a frontend pod being removed from the
    Service) is sent again, at most ``retries`` times; its failures are counted in
    ``connection_errors``. Any other outcome than HTTP 200 is kept in ``failures``.
    """

    def __init__(self, addrs: list[str], app: str, threads: int = 4, retries: int = 5) -> None:
        self.addrs, self.app, self.retries = addrs, app, retries
        self.answers: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.connection_errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def __enter__(self) -> QueryLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self, index: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            addr = self.addrs[n % len(self.addrs)]
            for attempt in range(self.retries + 1):
                try:
                    # A fresh connection each time, so a Service spreads the queries.
                    response = requests.post(f"http://{addr}/{self.app}/predict",
                                             json={"input": [float(index), float(n)]},
                                             timeout=30, headers={"Connection": "close"})
                except requests.ConnectionError as exc:
                    with self._lock:
                        self.connection_errors += 1
                    if attempt == self.retries:
                        with self._lock:
                            self.failures.append(f"{addr}: {exc}")
                    time.sleep(0.2)
                    continue
                with self._lock:
                    if response.status_code == 200:
                        self.answers.append({**response.json(), "addr": addr})
                    else:
                        self.failures.append(f"{addr}: {response.status_code} {response.text}")
                break
            time.sleep(0.01)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        """Wait until ``count`` more answers have arrived."""
        target = len(self.answers) + count
        deadline = time.monotonic() + timeout
        while len(self.answers) < target:
            assert time.monotonic() < deadline, f"only {len(self.answers)} answers: {self.failures}"
            time.sleep(0.1)
