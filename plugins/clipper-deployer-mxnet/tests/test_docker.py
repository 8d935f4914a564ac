"""One deployment under DockerContainerManager: the image built from the deployer's needs.

The cluster comes from :mod:`clipper_core.testing.docker` (dockerd and the registry-free base
image are prepared by the project's scripts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mxnet as mx
import numpy as np
import pytest

from clipper_admin.deployers.mxnet import deploy_mxnet_model
from clipper_core.testing.conformance import assert_outputs_match

if TYPE_CHECKING:
    from clipper_core.testing.docker import DockerCluster

pytest_plugins = ["clipper_core.testing.docker"]
pytestmark = pytest.mark.docker


def test_gluon_model_in_a_docker_replica(docker_cluster: DockerCluster, gluon_model: Any,
                                         gluon_func: Any,
                                         sample_inputs: list[list[float]]) -> None:
    conn = docker_cluster.conn
    conn.register_application("mxnet-docker", "floats", "-1", 10_000_000)
    deploy_mxnet_model(conn, "mxnet-docker", 1, "floats", gluon_func, gluon_model,
                       mxnet_data_shapes=None)
    conn.link_model_to_app("mxnet-docker", "mxnet-docker")
    expected = gluon_model(mx.nd.array(np.asarray(sample_inputs, np.float32))).asnumpy()[:, 0]

    answer = docker_cluster.wait_for_prediction("mxnet-docker", {"input_batch": sample_inputs})
    batch = answer["batch_predictions"]
    assert not any(p["default"] for p in batch), batch
    assert_outputs_match([p["output"] for p in batch], list(expected), rel_tol=1e-5)
