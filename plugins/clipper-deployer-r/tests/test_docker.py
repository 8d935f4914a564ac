"""The original Rclipper workflow on DockerContainerManager: build_model in R, deploy_model in
Python, 25 queries in a row. The image is built on clipper/r-closure (R from Debian)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from clipper_core.backends.docker_images import docker_client

if TYPE_CHECKING:
    from clipper_core.testing.docker import DockerCluster

pytest_plugins = ["clipper_core.testing.docker"]
pytestmark = pytest.mark.docker

IMAGE = "default-cluster-rtest-model:1"
#: The original integration test's model (integration-tests/r_integration_test): the length
#: of each input, as a string.
BUILD_MODEL = """
predict_func <- function(inputs) {
  lapply(inputs, function(input) as.character(length(input)))
}
Rclipper::build_model("rtest-model", "1", predict_func, as.numeric(7))
"""


def test_build_model_in_r_then_deploy_model_from_python(docker_cluster: DockerCluster,
                                                         run_r) -> None:
    proc = run_r(BUILD_MODEL)
    try:
        assert f"Built image {IMAGE} (doubles inputs)" in proc.stderr
        assert 'clipper_conn.deploy_model("rtest-model", "1", "doubles"' in proc.stderr
        conn = docker_cluster.conn
        conn.register_application("rtest-app", "doubles", "default_pred", 10_000_000)
        conn.deploy_model("rtest-model", 1, "doubles", IMAGE)
        conn.link_model_to_app("rtest-app", "rtest-model")
        docker_cluster.wait_for_prediction("rtest-app", {"input": [1.0]}, 300)
        for i in range(25):
            inputs = [float(j) for j in range(i % 5 + 1)]
            answer = docker_cluster.predict("rtest-app", {"input": inputs})
            assert answer["default"] is False, (answer, docker_cluster.logs())
            assert answer["output"] == len(inputs)
    finally:
        docker_client().images.remove(IMAGE, force=True)
