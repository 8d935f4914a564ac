"""Two clusters side by side on one engine (spec §11.4): isolated by labels and ports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from clipper_admin import ClipperConnection
from clipper_admin.deployers import python as python_deployer

pytestmark = pytest.mark.docker


def test_two_clusters_side_by_side(shared_conn: ClipperConnection,
                                   start_cluster: Callable[[str], ClipperConnection],
                                   dh: Any) -> None:
    def feature_sum(xs):  # local: cloudpickle ships it by value
        return [str(sum(x)) for x in xs]

    other = start_cluster("h4-tenant")
    assert other.get_query_addr() != shared_conn.get_query_addr()
    for conn in (shared_conn, other):
        python_deployer.create_endpoint(conn, "testapp0-model", "doubles", feature_sum)
    for conn in (shared_conn, other):
        answer = dh.wait_for_prediction(conn, "testapp0-model", {"input": [0.1, 0.2, 0.3]})
        assert answer["default"] is False
        assert answer["output"] == pytest.approx(0.6)
    mine = {c.id for c in dh.cluster_containers(shared_conn)}
    theirs = {c.id for c in dh.cluster_containers(other)}
    assert mine and theirs and not mine & theirs
    other.stop_all()
    assert dh.cluster_containers(other) == []
    assert dh.predict(shared_conn, "testapp0-model", {"input": [0.1, 0.2, 0.3]}).json()[
        "default"] is False
