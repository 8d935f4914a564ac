"""Tracing on the Docker backend: the query frontend in its clipper/server container exports
its spans to a collector on the host (the image carries clipper-core's tracing extra)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from clipper_admin import ClipperConnection
from clipper_admin.deployers import python as python_deployer
from clipper_core.testing.otlp import OtlpReceiver
from clipper_core.testing.servers import wait_until

pytestmark = pytest.mark.docker


def triple_sum(xs):
    return [str(3 * sum(x)) for x in xs]


def test_the_query_frontend_in_its_container_exports_spans(
        start_cluster: Callable[[str], ClipperConnection], dh: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpReceiver.for_containers() as receiver:
        monkeypatch.setenv("CLIPPER_TRACING_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export every 100 ms
        conn = start_cluster("h4-traced")
        conn.register_application("traced-app", "doubles", "-1", 2_000_000)
        python_deployer.deploy_python_closure(conn, "traced-model", 1, "doubles", triple_sum)
        conn.link_model_to_app("traced-app", "traced-model")
        answer = dh.wait_for_prediction(conn, "traced-app", {"input": [1.0, 2.0]})
        assert answer["output"] == 9.0, answer

        def answered() -> list[list[dict[str, Any]]]:  # traces of requests the model answered
            return [spans for spans in receiver.traces("traced-app").values()
                    if any(s["name"] == "clipper.receive"
                           and s["attributes"].get("clipper.model_versions") == "traced-model:1"
                           for s in spans)]

        wait_until(answered, 30, "the spans of an answered traced-app request")
        spans = answered()[0]
    assert {"clipper.receive", "clipper.decode", "clipper.cache", "clipper.encode"} <= {
        s["name"] for s in spans}
    assert {s["resource"]["service.name"] for s in spans} == {"clipper"}
