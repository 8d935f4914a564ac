"""The ``clipper`` command on the Docker backend: everything the embedded default's CLI does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
import requests

from clipper_core.backends.api import CLIPPER_DOCKER_LABEL
from clipper_core.backends.docker import docker_client, find_unbound_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def test_cli_runs_a_docker_cluster(docker_engine: Any, dh: Any, tmp_path) -> None:
    name = f"cli-docker-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "CLIPPER_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "clipper_core.cli", *args,
                               "--cluster-name", name], capture_output=True, text=True,
                              timeout=600, env=env)

    model = tmp_path / "doubler.py"
    model.write_text("def predict(xs):\n    return [str(2 * sum(x)) for x in xs]\n")
    ports = [str(find_unbound_port(0)) for _ in range(4)]
    started = cli("start", "--backend", "docker", "--query-port", ports[0],
                  "--management-port", ports[1], "--rpc-port", ports[2], "--redis-port", ports[3])
    try:
        assert started.returncode == 0, started.stderr
        assert "(docker backend)" in started.stdout
        assert f"/dashboard?query=http://localhost:{ports[0]}" in started.stdout
        # later commands find the backend and its ports in the record `start` wrote
        status = json.loads(cli("status", "--json").stdout)
        assert status["backend"] == "docker"
        assert status["query_api"].endswith(f":{ports[0]}")
        page = requests.get(status["dashboard"], timeout=10)
        assert page.status_code == 200
        assert "<title>Clipper dashboard</title>" in page.text

        deployed = cli("deploy", f"{model}:predict", "--name", "doubler", "--app", "twice")
        assert deployed.returncode == 0, deployed.stderr
        assert "Deployed doubler:1 (1 replica(s)), linked to twice" in deployed.stdout
        assert "replicas of doubler:1 connected" in deployed.stderr
        assert "Building image" in deployed.stderr or "up to date" in deployed.stderr

        pred = json.loads(cli("predict", "twice", "[1.0, 2.0]").stdout)
        assert (pred["output"], pred["default"]) == (6.0, False)
        apps = json.loads(cli("apps", "--json").stdout)
        assert [(a["name"], a["linked_models"]) for a in apps] == [("twice", ["doubler"])]
        models = json.loads(cli("models", "--json").stdout)
        assert [(m["model_name"], m["num_replicas"]) for m in models] == [("doubler", 1)]

        scaled = cli("scale", "doubler", "2")
        assert scaled.returncode == 0, scaled.stderr
        replicas = json.loads(cli("replicas", "--json").stdout)
        assert replicas["running"] == [{"model_name": "doubler", "model_version": "1",
                                        "running": 2, "connected": 2}]
        metrics = json.loads(cli("metrics", "--json").stdout)
        assert metrics["apps"]["twice"]["num_predictions.count"] >= 1
        top = cli("top", "--iterations", "1", "--interval", "0.2")
        assert top.returncode == 0, top.stderr
        assert "doubler:1" in top.stdout
        logs = cli("logs", "--dir", str(tmp_path / "logs"), "--json")
        assert logs.returncode == 0, logs.stderr
        assert json.loads(logs.stdout)
        kept = cli("stop", "--keep-state")
        assert kept.returncode == 1
        assert "cannot keep a stopped cluster's state" in kept.stderr
    finally:
        stopped = cli("stop")
        dh.remove_model_images(name)
    assert stopped.returncode == 0, stopped.stderr
    assert docker_client().containers.list(
        all=True, filters={"label": f"{CLIPPER_DOCKER_LABEL}={name}"}) == []
    assert cli("status").returncode == 1
