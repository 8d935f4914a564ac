"""Process lifecycle of the embedded default: restarts, supervision, isolation, refusals."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from clipper_admin import ClipperConnection, ClipperException
from clipper_admin.deployers import python as python_deployer
from clipper_core.backends.local import SERVER_MARKER, process_alive
from clipper_core.testing.servers import RedisServer


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_server_killed_then_connect_loses_nothing(start_cluster, helpers):
    conn = start_cluster("restart-test")
    python_deployer.create_endpoint(conn, "restart-app", "doubles", feature_sum)
    conn.register_model("restart-app", "2", "doubles")
    conn.set_model_version("restart-app", "1")
    assert helpers.wait_for_prediction(conn, "restart-app", {"input": [1.5, 2.0]})["output"] == 3.5
    before = (conn.get_all_apps(verbose=True), conn.get_all_models(verbose=True))

    old_pid = conn.cm.server_pid()
    os.kill(old_pid, signal.SIGKILL)
    helpers.wait_until(lambda: not process_alive(old_pid, SERVER_MARKER), what="server death")

    again = ClipperConnection(helpers.local_manager(conn.cm.cluster_dir.parent, "restart-test"))
    again.connect()
    assert again.cm.server_pid() not in (None, old_pid)
    assert again.get_query_addr() == conn.get_query_addr()
    assert (again.get_all_apps(verbose=True), again.get_all_models(verbose=True)) == before
    assert again.get_linked_models("restart-app") == ["restart-app"]
    # the replica was never restarted by anyone: it reconnects by itself
    assert again.get_num_replicas("restart-app") == 1
    pred = helpers.wait_for_prediction(again, "restart-app", {"input": [1.5, 2.0]})
    assert pred["output"] == 3.5


def test_killed_replica_is_restarted_by_its_supervisor(start_cluster, helpers):
    conn = start_cluster("supervise-test")
    python_deployer.create_endpoint(conn, "sup-app", "doubles", feature_sum)
    helpers.wait_for_prediction(conn, "sup-app", {"input": [1.0]})
    (replica,) = conn.cm.replica_processes()
    (runtime_pid,) = children(replica["pid"])
    os.kill(runtime_pid, signal.SIGKILL)

    new_pid = helpers.wait_until(
        lambda: [p for p in children(replica["pid"]) if p != runtime_pid], what="restart")
    assert new_pid
    assert conn.get_num_replicas("sup-app") == 1
    assert helpers.wait_for_prediction(conn, "sup-app", {"input": [2.0, 2.0]})["output"] == 4.0
    log = Path(replica["log"]).read_text()
    assert "replica exited with code -9; restarting" in log


def test_start_refuses_a_running_cluster_and_a_taken_port(start_cluster, helpers, tmp_path):
    conn = start_cluster("refusal-test")
    with pytest.raises(ClipperException, match="already running"):
        ClipperConnection(conn.cm).start_clipper()

    cm = helpers.local_manager(tmp_path, "port-test")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", cm.clipper_rpc_port))
        sock.listen()
        with pytest.raises(ClipperException,
                           match=f"Port {cm.clipper_rpc_port} \\(RPC port.*clipper_rpc_port"):
            ClipperConnection(cm).start_clipper()
    assert cm.server_pid() is None


def test_connect_to_missing_cluster_fails_clearly(helpers, tmp_path):
    with pytest.raises(ClipperException, match="No cluster named ghost"):
        ClipperConnection(helpers.local_manager(tmp_path, "ghost")).connect()


def test_two_clusters_side_by_side(start_cluster, helpers):
    first = start_cluster("multi-tenancy-1")
    second = start_cluster("multi-tenancy-2")
    for conn in (first, second):
        python_deployer.create_endpoint(conn, "testapp0-model", "doubles", feature_sum)
    for conn in (first, second):
        pred = helpers.wait_for_prediction(conn, "testapp0-model", {"input": [0.1, 0.2, 0.3]})
        assert pred["output"] == pytest.approx(0.6)
    first.unregister_application("testapp0-model")
    assert second.get_all_apps() == ["testapp0-model"]

    first.stop_all()
    assert first.cm.server_pid() is None
    assert first.cm.replica_processes() == []
    assert not (first.cm.cluster_dir / "state.db").exists()
    assert helpers.predict(second, "testapp0-model", {"input": [1.0]})["output"] == 1.0


def test_stop_all_keep_state_then_start_resumes(start_cluster, helpers):
    conn = start_cluster("resume-test")
    python_deployer.create_endpoint(conn, "kept-app", "strings", lambda xs: [len(x) for x in xs])
    assert helpers.wait_for_prediction(conn, "kept-app", {"input": "abcd"})["output"] == 4
    conn.cm.stop_all(keep_state=True)
    assert conn.cm.server_pid() is None
    assert conn.cm.get_num_replicas("kept-app", "1") == 0

    again = ClipperConnection(conn.cm)
    again.start_clipper()
    assert again.get_all_apps() == ["kept-app"]
    assert again.get_num_replicas("kept-app") == 1
    assert helpers.wait_for_prediction(again, "kept-app", {"input": "abc"})["output"] == 3


def test_redis_store_instead_of_sqlite(start_cluster, helpers):
    with RedisServer() as redis:
        conn = start_cluster("redis-test", redis_ip=redis.host, redis_port=redis.port)
        conn.register_application("redis-app", "doubles", "DEFAULT", 100000)
        assert conn.get_all_apps() == ["redis-app"]
        assert not (conn.cm.cluster_dir / "state.db").exists()
        assert "redis://" in (conn.cm.cluster_dir / "cluster.json").read_text()
        conn.stop_all()
