"""The seeds' quickstart (001), verbatim, on a real Docker engine: the curl query returns 6.6."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from clipper_admin import ClipperConnection, DockerContainerManager
from clipper_admin.deployers import python as python_deployer
from clipper_core.backends.api import CLIPPER_DOCKER_LABEL
from clipper_core.backends.docker import docker_client

pytestmark = pytest.mark.docker


def test_quickstart_returns_6_6(docker_engine: Any, dh: Any) -> None:
    manager = dh.new_manager("h4-quickstart")  # DockerContainerManager() on free ports
    clipper_conn = ClipperConnection(manager)
    try:
        clipper_conn.start_clipper()
        clipper_conn.register_application(name="hello-world", input_type="doubles",
                                          default_output="-1.0", slo_micros=100000)
        assert clipper_conn.get_all_apps() == ["hello-world"]

        def feature_sum(xs):
            return [str(sum(x)) for x in xs]

        python_deployer.deploy_python_closure(clipper_conn, name="sum-model", version=1,
                                              input_type="doubles", func=feature_sum)
        clipper_conn.link_model_to_app(app_name="hello-world", model_name="sum-model")

        dh.wait_for_prediction(clipper_conn, "hello-world", {"input": [1.1, 2.2, 3.3]})
        out = subprocess.run(
            ["curl", "-s", "-X", "POST", "--header", "Content-Type:application/json", "-d",
             '{"input": [1.1, 2.2, 3.3]}', f"{clipper_conn.get_query_addr()}/hello-world/predict"],
            check=True, capture_output=True, text=True, timeout=30).stdout
        answer = json.loads(out)
        assert answer["default"] is False
        assert answer["output"] == pytest.approx(6.6)
    finally:
        # The seeds' "Clean": a new connection to the same cluster, connect(), stop_all().
        clipper_conn = ClipperConnection(DockerContainerManager(cluster_name=manager.cluster_name))
        clipper_conn.connect()
        clipper_conn.stop_all()
        dh.remove_model_images(manager.cluster_name)
    left = docker_client().containers.list(
        all=True, filters={"label": f"{CLIPPER_DOCKER_LABEL}={manager.cluster_name}"})
    assert left == []
