"""A real ManagementFrontend on a free port, over a SQLite store in tmp_path, in its own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from clipper_core.config import ClusterConfig
from clipper_core.frontend.management import ManagementFrontend
from clipper_core.store.api import StateStore
from clipper_core.store.sqlite import SQLiteStore


class RunningFrontend:
    """Runs the frontend's event loop in a thread; ``post`` drives it over HTTP."""

    def __init__(self, tmp_path, store: StateStore | None = None, **config: Any) -> None:
        url = f"sqlite:///{tmp_path}/state.db"
        self.config = ClusterConfig(management_port=0, store_url=url, **config)
        self.store = store or SQLiteStore.from_url(url)
        self.frontend = ManagementFrontend(self.config, self.store)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._run(self.frontend.start())
        self.base = f"http://127.0.0.1:{self.frontend.port}"
        self.session = requests.Session()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def post(self, route: str, body: Any = None, *, data: bytes | str | None = None,
             headers: dict[str, str] | None = None) -> requests.Response:
        """POST ``body`` as JSON (or raw ``data``) to ``/admin/<route>``."""
        if data is None:
            return self.session.post(f"{self.base}/admin/{route}", json=body, headers=headers,
                                     timeout=10)
        headers = {"Content-Type": "application/json", **(headers or {})}
        return self.session.post(f"{self.base}/admin/{route}", data=data, headers=headers,
                                 timeout=10)

    def ok(self, route: str, body: Any = None) -> Any:
        """POST and require 200; JSON answers come back parsed, plain text as str."""
        resp = self.post(route, body)
        assert resp.status_code == 200, resp.text
        if resp.headers["Content-Type"] == "application/json":
            return resp.json()
        return resp.text

    def error(self, route: str, body: Any = None, **kwargs: Any) -> str:
        """POST and require a 400 with a plain-text message; return the message."""
        resp = self.post(route, body, **kwargs)
        assert resp.status_code == 400, (resp.status_code, resp.text)
        assert resp.headers["Content-Type"].startswith("text/plain")
        return resp.text

    def close(self) -> None:
        self.session.close()
        self._run(self.frontend.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
        self.store.close()


@pytest.fixture
def start_frontend(tmp_path) -> Iterator[Callable[..., RunningFrontend]]:
    started: list[RunningFrontend] = []

    def start(store: StateStore | None = None, **config: Any) -> RunningFrontend:
        frontend = RunningFrontend(tmp_path, store, **config)
        started.append(frontend)
        return frontend

    yield start
    for frontend in started:
        frontend.close()


@pytest.fixture
def mgmt(start_frontend) -> RunningFrontend:
    return start_frontend()
