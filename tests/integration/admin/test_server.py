"""``python -m clipper_core.server``: roles from the environment, clean SIGTERM, bad config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import requests


def test_from_env_runs_the_management_role_and_stops_on_sigterm(tmp_path, helpers):
    port = helpers.unused_port()
    env = {**os.environ, "CLIPPER_ROLES": "management", "CLIPPER_MANAGEMENT_PORT": str(port),
           "CLIPPER_STORE_URL": f"sqlite:///{tmp_path}/state.db", "CLIPPER_CLUSTER_NAME": "env"}
    proc = subprocess.Popen([sys.executable, "-m", "clipper_core.server", "--from-env"], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        helpers.wait_until(lambda: _ping(port) == "PONG", what="the management API")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Cluster env serving: management on 127.0.0.1" in stderr
    assert "Stopped" in stderr
    assert (tmp_path / "state.db").exists()


def _ping(port: int) -> str | None:
    try:
        return requests.get(f"http://127.0.0.1:{port}/admin/ping", timeout=5).text
    except requests.ConnectionError:
        return None


def test_unreadable_config_exits_2_with_a_message(tmp_path):
    config = tmp_path / "cluster.json"
    config.write_text('{"query_prot": 1}')
    proc = subprocess.run([sys.executable, "-m", "clipper_core.server", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Unknown configuration keys ['query_prot']" in proc.stderr
