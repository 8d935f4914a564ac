"""The seeds' quickstart (seed 001), typed step by step with LocalContainerManager."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import requests

from clipper_core.testing.servers import free_port


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


def test_seed_quickstart_on_the_embedded_default(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPPER_HOME", str(tmp_path))
    ports = {"clipper_query_port": free_port(), "clipper_management_port": free_port(),
             "clipper_rpc_port": free_port()}

    # 1. the seed's imports, with the local manager in place of DockerContainerManager
    from clipper_admin import ClipperConnection, LocalContainerManager

    clipper_conn = ClipperConnection(LocalContainerManager(**ports))
    try:
        # 2. start Clipper
        clipper_conn.start_clipper()
        # 3. register an application
        clipper_conn.register_application(name="hello-world", input_type="doubles",
                                          default_output="-1.0", slo_micros=100000)
        # 4. inspect Clipper
        assert clipper_conn.get_all_apps() == ["hello-world"]
        # 5-7. deploy feature_sum with the python deployer
        from clipper_admin.deployers import python as python_deployer

        python_deployer.deploy_python_closure(clipper_conn, name="sum-model", version=1,
                                              input_type="doubles", func=feature_sum)
        # 8. link
        clipper_conn.link_model_to_app(app_name="hello-world", model_name="sum-model")
        # 9. predictions: the curl command of the seed
        query = clipper_conn.get_query_addr()
        headers = {"Content-type": "application/json"}
        deadline = time.monotonic() + 60
        while True:
            r = requests.post(f"http://{query}/hello-world/predict", headers=headers,
                              data=json.dumps({"input": [1.1, 2.2, 3.3]}), timeout=10)
            assert r.status_code == 200, r.text
            pred = r.json()
            if not pred["default"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert pred["default"] is False, pred
        assert pred["output"] == pytest.approx(6.6)
        assert isinstance(pred["query_id"], int)
        # ... and the Python one, with a random vector
        x = list(np.random.random(10))
        pred = requests.post(f"http://{query}/hello-world/predict", headers=headers,
                             data=json.dumps({"input": x}), timeout=10).json()
        assert pred["default"] is False
        assert pred["output"] == pytest.approx(sum(x))

        # Clean: a new connection (as from a new interpreter) connects and stops everything
        clipper_conn = ClipperConnection(LocalContainerManager(**ports))
        clipper_conn.connect()
        assert clipper_conn.get_linked_models("hello-world") == ["sum-model"]
    finally:
        clipper_conn.stop_all()
    with pytest.raises(requests.ConnectionError):
        requests.post(f"http://{query}/hello-world/predict", json={"input": [1.0]}, timeout=5)
    assert not list((tmp_path / "default-cluster" / "replicas").glob("*"))
