"""One deployment under DockerContainerManager: the image built from the deployer's needs.

Needs a Docker engine (``scripts/ensure-docker.sh`` starts one) and builds everything FROM
the registry-free base image of ``scripts/build-base-image.sh`` (the JRE comes from apt).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from clipper_admin import ClipperConnection, DockerContainerManager
from clipper_admin.deployers.pyspark import deploy_pyspark_model
from clipper_core.backends.docker import find_unbound_port
from clipper_core.testing.conformance import assert_outputs_match

ROOT = Path(__file__).resolve().parents[3]
BASE_IMAGE = "clipper/base:bookworm"

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def docker_conn() -> Iterator[ClipperConnection]:
    for script in ("ensure-docker.sh", "build-base-image.sh"):
        subprocess.run([str(ROOT / "scripts" / script)], check=True, timeout=900)
    previous = os.environ.get("CLIPPER_BASE_IMAGE")
    os.environ["CLIPPER_BASE_IMAGE"] = BASE_IMAGE
    manager = DockerContainerManager(
        cluster_name=f"pyspark-{uuid.uuid4().hex[:6]}",
        clipper_query_port=find_unbound_port(0), clipper_management_port=find_unbound_port(0),
        clipper_rpc_port=find_unbound_port(0), redis_port=find_unbound_port(0))
    conn = ClipperConnection(manager)
    try:
        conn.start_clipper()
        yield conn
    finally:
        conn.stop_all(graceful=False)
        if previous is None:
            os.environ.pop("CLIPPER_BASE_IMAGE", None)
        else:
            os.environ["CLIPPER_BASE_IMAGE"] = previous


def test_mllib_model_in_a_docker_replica(docker_conn: ClipperConnection, spark: Any,
                                         mllib_model: Any, mllib_predict: Any,
                                         mllib_inputs: list[list[float]]) -> None:
    docker_conn.register_application("pyspark-docker", "doubles", "-1", 10_000_000)
    deploy_pyspark_model(docker_conn, "pyspark-docker", 1, "doubles", mllib_predict,
                         mllib_model, spark.sparkContext)
    docker_conn.link_model_to_app("pyspark-docker", "pyspark-docker")
    expected = [json.loads(o) for o in mllib_predict(spark, mllib_model, mllib_inputs)]

    url = f"http://{docker_conn.get_query_addr()}/pyspark-docker/predict"
    deadline = time.monotonic() + 600
    while True:
        batch = requests.post(url, json={"input_batch": mllib_inputs},
                              timeout=30).json()["batch_predictions"]
        if not any(p["default"] for p in batch) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not any(p["default"] for p in batch), batch
    assert_outputs_match([p["output"] for p in batch], expected)
