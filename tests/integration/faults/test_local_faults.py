"""Faults on the embedded default's real processes: killed replicas, supervisors and servers,
under load. Every query sent gets an answer (a prediction, the default output, or a 4xx/503),
and the cluster recovers by itself."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import requests

from clipper_admin import ClipperConnection
from clipper_admin.deployers import python as python_deployer
from clipper_core.backends.local import SERVER_MARKER, process_alive


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


def runtimes(cluster_dir: Path) -> list[int]:
    """Pids of the replica runtimes of the cluster in ``cluster_dir`` (from their environment)."""
    marker = f"CLIPPER_MODEL_PATH={cluster_dir}/".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"clipper_core.runtime" in cmdline and marker in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def supervisor_children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Load:
    """Clients posting queries in a loop; every outcome is recorded."""

    def __init__(self, url: str, body: dict, clients: int = 4) -> None:
        self.url, self.body = url, body
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            try:
                response = session.post(self.url, json=self.body, timeout=30)
            except requests.ConnectionError as exc:
                self.errors.append(type(exc).__name__)
                session = requests.Session()
                continue
            self.statuses.append(response.status_code)
            assert response.status_code != 200 or "output" in response.json()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    @property
    def sent(self) -> int:
        return len(self.statuses) + len(self.errors)


def test_replica_dies_with_its_killed_supervisor(start_cluster, helpers):
    conn = start_cluster("orphan-test")
    python_deployer.create_endpoint(conn, "orphan-app", "doubles", feature_sum)
    helpers.wait_for_prediction(conn, "orphan-app", {"input": [1.0]})
    (replica,) = conn.cm.replica_processes()
    (runtime,) = supervisor_children(replica["pid"])
    assert runtimes(conn.cm.cluster_dir) == [runtime]

    os.kill(replica["pid"], signal.SIGKILL)
    helpers.wait_until(lambda: runtime not in runtimes(conn.cm.cluster_dir), 20,
                       "the replica to die with its supervisor")
    assert conn.get_num_replicas("orphan-app") == 0
    conn.set_num_replicas("orphan-app", 1)
    helpers.wait_until(lambda: len(runtimes(conn.cm.cluster_dir)) == 1, 30, "one new replica")
    assert helpers.wait_for_prediction(conn, "orphan-app", {"input": [2.0]})["output"] == 2.0
    conn.stop_all()
    assert runtimes(conn.cm.cluster_dir) == []


def test_replica_killed_under_load(start_cluster, helpers):
    conn = start_cluster("kill-replica-test")
    python_deployer.create_endpoint(conn, "load-app", "doubles", feature_sum, slo_micros=2_000_000,
                                    num_replicas=2)
    helpers.wait_until(lambda: conn.get_num_replicas("load-app") == 2, 60, "two replicas")
    helpers.wait_for_prediction(conn, "load-app", {"input": [1.0]})
    load = Load(f"http://{conn.get_query_addr()}/load-app/predict", {"input": [1.0, 2.0]})
    try:
        helpers.wait_until(lambda: len(load.statuses) > 20, 30, "queries flowing")
        victim = supervisor_children(conn.cm.replica_processes()[0]["pid"])[0]
        os.kill(victim, signal.SIGKILL)
        seen = len(load.statuses)
        helpers.wait_until(lambda: len(load.statuses) > seen + 50, 60, "queries after the kill")
        helpers.wait_until(lambda: len(runtimes(conn.cm.cluster_dir)) == 2, 60, "a replacement")
    finally:
        load.finish()
    assert load.errors == []
    assert set(load.statuses) <= {200, 503}, load.statuses
    assert helpers.wait_for_prediction(conn, "load-app", {"input": [1.0, 2.0]})["output"] == 3.0


def test_server_killed_under_load_restarts_with_everything(start_cluster, helpers):
    conn = start_cluster("kill-server-test")
    python_deployer.create_endpoint(conn, "kept-app", "doubles", feature_sum)
    helpers.wait_for_prediction(conn, "kept-app", {"input": [1.0]})
    before = (conn.get_all_apps(verbose=True), conn.get_all_models(verbose=True))
    load = Load(f"http://{conn.get_query_addr()}/kept-app/predict", {"input": [1.0, 2.0]})
    try:
        helpers.wait_until(lambda: len(load.statuses) > 20, 30, "queries flowing")
        old_pid = conn.cm.server_pid()
        os.kill(old_pid, signal.SIGKILL)
        helpers.wait_until(lambda: not process_alive(old_pid, SERVER_MARKER), 20, "server death")
        again = ClipperConnection(helpers.local_manager(conn.cm.cluster_dir.parent,
                                                        "kill-server-test"))
        again.connect()
        seen = len(load.statuses)
        helpers.wait_until(lambda: len(load.statuses) > seen + 20, 60, "answers after restart")
    finally:
        load.finish()
    # While no server ran, connections were refused (nothing to answer them); every query the
    # server accepted was answered.
    assert set(load.statuses) <= {200, 503}, load.statuses
    assert set(load.errors) <= {"ConnectionError"}
    assert (again.get_all_apps(verbose=True), again.get_all_models(verbose=True)) == before
    assert again.get_num_replicas("kept-app") == 1
    assert helpers.wait_for_prediction(again, "kept-app", {"input": [1.0, 2.0]})["output"] == 3.0
