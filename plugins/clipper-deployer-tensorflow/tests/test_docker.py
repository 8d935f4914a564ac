"""One deployment under DockerContainerManager, in the image built from the deployer's needs.

The image gets tensorflow-cpu (with Keras); the cluster comes from
:mod:`clipper_core.testing.docker`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from clipper_admin.deployers.tensorflow import deploy_tensorflow_model
from clipper_core.testing.conformance import assert_outputs_match

if TYPE_CHECKING:
    from clipper_core.testing.docker import DockerCluster

pytest_plugins = ["clipper_core.testing.docker"]
pytestmark = pytest.mark.docker


def test_keras_model_in_a_docker_replica(docker_cluster: DockerCluster,
                                         keras_model: Any, keras_func: Any,
                                         sample_inputs: list[list[float]],
                                         keras_probabilities: list[list[float]]) -> None:
    conn = docker_cluster.conn
    conn.register_application("tensorflow-docker", "floats", "-1", 10_000_000)
    deploy_tensorflow_model(conn, "tensorflow-docker", 1, "floats", keras_func, keras_model)
    conn.link_model_to_app("tensorflow-docker", "tensorflow-docker")

    singles, batch = docker_cluster.single_and_batch_outputs("tensorflow-docker",
                                                             sample_inputs)
    assert_outputs_match(singles, keras_probabilities)
    assert_outputs_match(batch, keras_probabilities)
