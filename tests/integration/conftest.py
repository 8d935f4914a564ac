"""Local clusters for the admin and fault tests: real server and replica processes on free ports."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from clipper_core.admin.connection import ClipperConnection
from clipper_core.backends.local import LocalContainerManager

LOG_TAIL_LINES = 25
_basetemp = pytest.StashKey[Path]()


@pytest.fixture(autouse=True)
def _remember_basetemp(request, tmp_path_factory):
    request.node.stash[_basetemp] = tmp_path_factory.getbasetemp()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with the tail of every cluster log written while it ran:
    the server's and replicas' side of the failure, which CI keeps only in its output."""
    report = yield
    if report.failed and _basetemp in item.stash:
        for log in sorted(item.stash[_basetemp].glob("**/logs/*.log")):
            if log.stat().st_mtime >= call.start:
                tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                report.sections.append((f"{log.parent.parent.name}/{log.name}", "\n".join(tail)))
    return report


@pytest.fixture(scope="session", autouse=True)
def clipper_home(tmp_path_factory):
    """CLIPPER_HOME in a temp dir, so nothing touches ~/.clipper."""
    home = tmp_path_factory.mktemp("clipper-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLIPPER_HOME", str(home))
        yield home


def unused_port() -> int:
    """A free port below the ephemeral range.

    Ports from ``free_port()`` are ephemeral: while a test's server is down, an outgoing
    connection (a replica reconnecting) may take one and the restart would find it in use.
    """
    low, _ = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    while True:
        port = random.randint(max(1024, low - 12000), low - 1)
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port


def local_manager(root, name: str, **kwargs) -> LocalContainerManager:
    """A manager for cluster ``name`` on three free ports, its directory under ``root``."""
    return LocalContainerManager(
        cluster_name=name, clipper_query_port=unused_port(),
        clipper_management_port=unused_port(), clipper_rpc_port=unused_port(),
        cluster_dir=root / name, **kwargs)


@pytest.fixture(scope="module")
def start_cluster(tmp_path_factory):
    """Start clusters (``start_cluster(name)``); every one is stopped when the module ends."""
    root = tmp_path_factory.mktemp("clusters")
    started: list[ClipperConnection] = []

    def start(name: str = "admin-test", **kwargs) -> ClipperConnection:
        conn = ClipperConnection(local_manager(root, name, **kwargs))
        started.append(conn)
        conn.start_clipper()
        return conn

    yield start
    for conn in started:
        conn.stop_all(graceful=False)


@pytest.fixture(scope="module")
def conn(start_cluster) -> ClipperConnection:
    """One cluster shared by the tests of a module (they use distinct names)."""
    return start_cluster()


def wait_until(check, timeout: float = 60.0, what: str = "condition"):
    """Poll ``check()`` until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def predict(conn: ClipperConnection, app: str, body: dict) -> dict:
    r = requests.post(f"http://{conn.get_query_addr()}/{app}/predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for_prediction(conn: ClipperConnection, app: str, body: dict,
                        timeout: float = 60.0) -> dict:
    """Query until the answer is not the default output (the replica has connected)."""

    def check():
        pred = predict(conn, app, body)
        return pred if not pred["default"] else None

    return wait_until(check, timeout, f"a non-default prediction from {app}")


@pytest.fixture(scope="session")
def helpers():
    """The helper functions above, for the test modules (conftest is not importable)."""

    return SimpleNamespace(wait_until=wait_until, predict=predict,
                           wait_for_prediction=wait_for_prediction, local_manager=local_manager,
                           unused_port=unused_port)
