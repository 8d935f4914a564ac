"""The management frontend's dashboard files and the set_num_replicas route."""

from __future__ import annotations

import pytest
import requests

from clipper_core.exceptions import ClipperError
from clipper_core.frontend.management import ManagementService
from clipper_core.store.sqlite import SQLiteStore
from clipper_core.types import CONTAINERLESS_MODEL_IMAGE, InputType, ModelVersion


def test_dashboard_files_are_served_without_a_token(start_frontend) -> None:
    mgmt = start_frontend(management_token="secret", require_management_token=True,
                          query_port=4242)
    page = requests.get(f"{mgmt.base}/dashboard", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<meta name="clipper-query-port" content="4242">' in page.text
    for name, kind in (("dashboard.js", "text/javascript"), ("plot.js", "text/javascript"),
                       ("dashboard.css", "text/css")):
        r = requests.get(f"{mgmt.base}/dashboard/{name}", timeout=10)
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith(kind)
    missing = requests.get(f"{mgmt.base}/dashboard/state.db", timeout=10)
    assert missing.status_code == 404
    post = requests.post(f"{mgmt.base}/dashboard", timeout=10)
    assert post.status_code == 405
    # the management routes themselves still need the token
    assert mgmt.post("get_all_models", {"verbose": True}).status_code == 401


def test_set_num_replicas_without_a_scaler_names_what_to_use(mgmt) -> None:
    message = mgmt.error("set_num_replicas", {"model_name": "m", "model_version": "1",
                                              "num_replicas": 2})
    assert "Use `clipper scale` or ClipperConnection.set_num_replicas" in message


def test_set_num_replicas_calls_the_scaler(tmp_path) -> None:
    calls = []
    store = SQLiteStore.from_url(f"sqlite:///{tmp_path}/state.db")
    service = ManagementService(store, scale=lambda *args: calls.append(args), max_replicas=8)
    store.add_model_version(ModelVersion("m", "1", InputType.parse("doubles"), (), "img:1", -1,
                                         "DEPRECATED"))
    store.add_model_version(ModelVersion("c", "1", InputType.parse("doubles"), (),
                                         CONTAINERLESS_MODEL_IMAGE, -1, "DEPRECATED"))
    assert service.set_num_replicas("m", "1", 3) == (
        "Model with name 'm' and version '1' now has 3 replica(s)")
    assert calls == [("m", "1", "doubles", "img:1", 3)]
    for args, expected in ((("m", "2", 1), "does not exist"), (("m", "1", -1), "0 to 8"),
                           (("m", "1", 9), "Expected 0 to 8 \\(the cluster's max_replicas"),
                           (("c", "1", 1), "containerless")):
        with pytest.raises(ClipperError, match=expected):
            service.set_num_replicas(*args)
    store.close()
