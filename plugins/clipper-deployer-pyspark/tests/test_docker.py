"""One deployment under DockerContainerManager: the image built from the deployer's needs.

The cluster comes from :mod:`clipper_core.testing.docker` (dockerd and the registry-free base
image are prepared by the project's scripts; the JRE comes from apt).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from clipper_admin.deployers.pyspark import deploy_pyspark_model
from clipper_core.testing.conformance import assert_outputs_match

if TYPE_CHECKING:
    from clipper_core.testing.docker import DockerCluster

pytest_plugins = ["clipper_core.testing.docker"]
pytestmark = pytest.mark.docker


def test_mllib_model_in_a_docker_replica(docker_cluster: DockerCluster, spark: Any,
                                         mllib_model: Any, mllib_predict: Any,
                                         mllib_inputs: list[list[float]]) -> None:
    conn = docker_cluster.conn
    conn.register_application("pyspark-docker", "doubles", "-1", 10_000_000)
    deploy_pyspark_model(conn, "pyspark-docker", 1, "doubles", mllib_predict, mllib_model,
                         spark.sparkContext)
    conn.link_model_to_app("pyspark-docker", "pyspark-docker")
    expected = [json.loads(o) for o in mllib_predict(spark, mllib_model, mllib_inputs)]

    answer = docker_cluster.wait_for_prediction("pyspark-docker", {"input_batch": mllib_inputs},
                                                timeout=600)
    batch = answer["batch_predictions"]
    assert not any(p["default"] for p in batch), batch
    assert_outputs_match([p["output"] for p in batch], expected)
