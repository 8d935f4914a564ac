"""A server that cannot write (its files may not grow: RLIMIT_FSIZE, as on a full disk) refuses
management calls with a clear error, keeps serving queries, corrupts nothing, and works again
once it can write."""

from __future__ import annotations

import resource
import sqlite3

import pytest
import requests

from clipper_admin import ClipperException
from clipper_admin.deployers import python as python_deployer


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


def test_write_error_fails_the_call_clearly_and_corrupts_nothing(start_cluster, helpers):
    conn = start_cluster("write-error-test")
    python_deployer.create_endpoint(conn, "before-app", "doubles", feature_sum)
    helpers.wait_for_prediction(conn, "before-app", {"input": [1.0]})
    before = (conn.get_all_apps(verbose=True), conn.get_all_models(verbose=True))
    pid = conn.cm.server_pid()
    unlimited = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, unlimited[1]))
    try:
        for _ in range(3):
            with pytest.raises(ClipperException, match=r"cannot write .*Free disk space"):
                conn.register_application("during-app", "doubles", "d", 100000)
        r = requests.post(f"http://{conn.cm.get_admin_addr()}/admin/add_app",
                          json={"name": "raw-app", "input_type": "doubles",
                                "default_output": "d", "latency_slo_micros": 100000},
                          timeout=30)
        assert r.status_code == 507, r.text
        assert "cannot write" in r.text
        assert helpers.predict(conn, "before-app", {"input": [2.0]})["output"] == 2.0
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, unlimited)
    assert conn.cm.server_pid() == pid
    assert (conn.get_all_apps(verbose=True), conn.get_all_models(verbose=True)) == before
    conn.register_application("after-app", "doubles", "d", 100000)
    assert "after-app" in conn.get_all_apps()
    db = sqlite3.connect(conn.cm.cluster_dir / "state.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()
