"""One deployment under DockerContainerManager, in the image built from the deployer's needs.

torch in the image is the release installed here (``same_as_installed``); the cluster comes
from :mod:`clipper_core.testing.docker`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from clipper_admin.deployers.pytorch import deploy_pytorch_model
from clipper_core.testing.conformance import assert_outputs_match

if TYPE_CHECKING:
    from clipper_core.testing.docker import DockerCluster

pytest_plugins = ["clipper_core.testing.docker"]
pytestmark = pytest.mark.docker


def test_module_in_a_docker_replica(docker_cluster: DockerCluster, trained_net: Any,
                                    probabilities_as_json: Any, sample_inputs: list[list[float]],
                                    direct_probabilities: list[list[float]]) -> None:
    conn = docker_cluster.conn
    conn.register_application("pytorch-docker", "floats", "-1", 10_000_000)
    deploy_pytorch_model(conn, "pytorch-docker", 1, "floats", probabilities_as_json,
                         trained_net)
    conn.link_model_to_app("pytorch-docker", "pytorch-docker")

    singles, batch = docker_cluster.single_and_batch_outputs("pytorch-docker", sample_inputs)
    assert_outputs_match(singles, direct_probabilities)
    assert_outputs_match(batch, direct_probabilities)
