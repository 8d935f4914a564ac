"""A deploy waits for its replicas, and a replica that cannot start fails it with its log."""

from __future__ import annotations

import logging
import time

import pytest

from clipper_admin import ClipperException
from clipper_admin.deployers import python as python_deployer


def _module_only_here(tmp_path, monkeypatch, name: str):
    """A module importable by this process only (replicas do not have its directory)."""
    src = tmp_path / "only-here"
    src.mkdir()
    (src / f"{name}.py").write_text("FACTOR = 2\n")
    monkeypatch.syspath_prepend(str(src))
    return __import__(name)


def test_deploy_returns_once_the_replicas_are_connected(conn):
    python_deployer.deploy_python_closure(conn, "wait-ok", 1, "doubles",
                                          lambda xs: [str(sum(x)) for x in xs], num_replicas=2)
    replicas = [r for r in conn.get_all_model_replicas(verbose=True)
                if r["model_name"] == "wait-ok"]
    assert len(replicas) == 2


def test_a_replica_that_cannot_import_fails_the_deploy_with_its_error(
        conn, tmp_path, monkeypatch):
    helper = _module_only_here(tmp_path, monkeypatch, "h9_only_here")

    def predict(xs):
        return [str(helper.FACTOR * sum(x)) for x in xs]

    conn.register_application("wait-import-app", "doubles", "DEFAULT", 1_000_000)
    started = time.monotonic()
    with pytest.raises(ClipperException) as info:
        python_deployer.deploy_python_closure(conn, "wait-import", 1, "doubles", predict)
    assert time.monotonic() - started < 60
    message = str(info.value)
    assert "Model wait-import:1 did not start: a replica exited before it served" in message
    assert "ModuleNotFoundError: No module named 'h9_only_here'" in message
    assert "deploy again" in message
    # Nothing is left behind: no replica restarting forever, no registered version.
    assert conn.cm.get_num_replicas("wait-import", "1") == 0
    assert conn.get_model_info("wait-import", "1") is None


def test_a_failed_deploy_leaves_the_previous_version_current(conn, tmp_path):
    python_deployer.create_endpoint(conn, "wait-prev", "doubles",
                                    lambda xs: [str(sum(x)) for x in xs], version="1")
    bad_bundle = tmp_path / "not-a-bundle"
    bad_bundle.mkdir()
    with pytest.raises(ClipperException, match="is not a model bundle"):
        conn.deploy_model("wait-prev", "2", "doubles", str(bad_bundle))
    assert conn.get_current_model_version("wait-prev") == "1"
    assert conn.get_model_info("wait-prev", "2") is None


class _HangsWhenLoaded:
    """Unpickling it sleeps: a replica that never gets to serve."""

    def __reduce__(self):
        return (time.sleep, (3600,))


def test_replicas_that_do_not_connect_time_out_with_progress(conn, caplog):
    never = _HangsWhenLoaded()
    conn.replica_start_timeout_s = 6
    try:
        with caplog.at_level(logging.INFO, logger="clipper"), \
                pytest.raises(ClipperException) as info:
            python_deployer.deploy_python_closure(conn, "wait-hang", 1, "doubles",
                                                  lambda xs: [str(never) for _ in xs])
    finally:
        conn.replica_start_timeout_s = 300
    assert "0 of 1 replicas connected within 6 s (replica_start_timeout_s)" in str(info.value)
    assert "wait-hang:1 replica 0" in str(info.value)
    assert "starting" in str(info.value)
    assert any("Waiting for replicas of wait-hang:1 to connect: 0 of 1" in r.getMessage()
               for r in caplog.records)
    assert conn.cm.get_num_replicas("wait-hang", "1") == 0


def test_scaling_up_waits_and_reports_a_broken_replica(conn, tmp_path):
    bad_bundle = tmp_path / "scale-bad"
    bad_bundle.mkdir()
    conn.register_model("wait-scale", "1", "doubles", image=str(bad_bundle))
    with pytest.raises(ClipperException,
                       match="Model wait-scale:1 did not start: a replica exited before it"):
        conn.set_num_replicas("wait-scale", 1, "1")
    assert "is not a model bundle" in conn.cm.replica_states("wait-scale", "1")[0].log_tail
    conn.cm.stop_models({"wait-scale": ["1"]})
