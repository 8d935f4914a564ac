"""Tracing under Kubernetes: the query frontend pods export their spans to a collector on the
host (reached at its docker0 address, which the local cluster's pods share), and a restart
without the settings turns it off."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from clipper_admin import ClipperConnection
from clipper_core.testing.otlp import OtlpReceiver
from clipper_core.testing.servers import wait_until

pytestmark = pytest.mark.k8s


def test_query_frontend_pods_export_spans_until_started_without_tracing(
        start_cluster: Callable[..., ClipperConnection], monkeypatch: pytest.MonkeyPatch
) -> None:
    with OtlpReceiver.for_containers() as receiver:
        with monkeypatch.context() as env:
            env.setenv("CLIPPER_TRACING_ENDPOINT", receiver.url)
            env.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export every 100 ms
            conn = start_cluster("k8s-traced")
        conn.register_application("traced-app", "doubles", "-1", 2_000_000)
        url = f"http://{conn.get_query_addr()}/traced-app/predict"

        def post() -> dict[str, Any]:
            return requests.post(url, json={"input": [1.0]}, timeout=10).json()

        wait_until(lambda: post() and receiver.traces("traced-app"), 60, "spans of traced-app")
        spans = [s for trace in receiver.traces("traced-app").values() for s in trace]
        [root, *_] = [s for s in spans if s["name"] == "clipper.receive"]
        assert root["attributes"]["http.response.status_code"] == 200
        assert root["resource"]["service.name"] == "clipper"
        conn.start_clipper()  # this process has no tracing settings now: the pods are replaced
        time.sleep(1.0)  # spans the old pods still exported
        before = len(receiver.traces("traced-app"))
        for _ in range(5):
            assert post()["default"] is True
        time.sleep(1.0)  # ten export intervals of the old setting
        assert len(receiver.traces("traced-app")) == before
