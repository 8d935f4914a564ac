"""One deployment under DockerContainerManager, in the image built from the deployer's needs.

The image gets onnxruntime; the cluster comes from :mod:`clipper_core.testing.docker`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from clipper_admin.deployers.onnx import deploy_onnx_model
from clipper_core.testing.conformance import assert_outputs_match

if TYPE_CHECKING:
    from clipper_core.testing.docker import DockerCluster

pytest_plugins = ["clipper_core.testing.docker"]
pytestmark = pytest.mark.docker


def test_onnx_graph_in_a_docker_replica(docker_cluster: DockerCluster,
                                        onnx_model: Any, session_probabilities: Any,
                                        sample_inputs: list[list[float]],
                                        direct_probabilities: list[list[float]]) -> None:
    conn = docker_cluster.conn
    conn.register_application("onnx-docker", "floats", "-1", 10_000_000)
    deploy_onnx_model(conn, "onnx-docker", 1, "floats", session_probabilities, onnx_model)
    conn.link_model_to_app("onnx-docker", "onnx-docker")

    singles, batch = docker_cluster.single_and_batch_outputs("onnx-docker", sample_inputs)
    assert_outputs_match(singles, direct_probabilities)
    assert_outputs_match(batch, direct_probabilities)
