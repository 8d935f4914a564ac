"""A cluster with its own Redis (redis_ip), extra_container_kwargs and centralized logs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clipper_admin import ClipperConnection, ClipperException, DockerContainerManager
from clipper_core.backends.docker import find_unbound_port
from clipper_core.backends.docker_images import ImageBuilder

pytestmark = pytest.mark.docker


@pytest.fixture
def own_redis(docker_engine: Any) -> Iterator[Any]:
    """A Redis container on the cluster network that no Clipper cluster manages."""
    manager = DockerContainerManager()
    manager._ensure_network()
    container = docker_engine.containers.run(
        ImageBuilder().redis(), name=f"h4-own-redis-{uuid.uuid4().hex[:6]}",
        network=manager.docker_network, detach=True)
    yield container
    container.remove(force=True)


def test_cluster_uses_the_given_redis(own_redis: Any, dh: Any, tmp_path: Path) -> None:
    manager = DockerContainerManager(
        cluster_name=f"h4-ext-redis-{uuid.uuid4().hex[:6]}", redis_ip=own_redis.name,
        clipper_query_port=find_unbound_port(0), clipper_management_port=find_unbound_port(0),
        clipper_rpc_port=find_unbound_port(0),
        extra_container_kwargs={"labels": {"team": "h4"}, "mem_limit": "512m"},
        use_centralized_log=True, fluentd_port=find_unbound_port(0))
    conn = ClipperConnection(manager)
    try:
        conn.start_clipper()
        names = {c.name.split("-")[0] for c in dh.cluster_containers(conn)}
        assert names == {"mgmt_frontend", "query_frontend", "supervisor"}
        # extra_container_kwargs reach every container; their labels join the cluster's.
        for container in dh.cluster_containers(conn, "team=h4"):
            assert container.attrs["HostConfig"]["Memory"] == 512 * 1024 * 1024
        assert len(dh.cluster_containers(conn, "team=h4")) == 3
        # Centralized logging: Docker's fluentd driver (asynchronous: no fluentd runs here).
        for container in dh.cluster_containers(conn):
            log_config = container.attrs["HostConfig"]["LogConfig"]
            assert log_config["Type"] == "fluentd"
            assert log_config["Config"]["fluentd-address"] == f"127.0.0.1:{manager.fluentd_port}"
        with pytest.raises(ClipperException, match="centralized logging"):
            conn.get_clipper_logs(str(tmp_path))
        other = DockerContainerManager(cluster_name=manager.cluster_name)
        other.connect()
        assert other.use_centralized_log
        assert other.fluentd_port == manager.fluentd_port
        conn.register_application("ext-app", "doubles", "DEFAULT", 100000)
        assert conn.get_all_apps() == ["ext-app"]
        # The state is in that Redis: emptying it empties the cluster.
        assert own_redis.exec_run(["redis-cli", "flushall"]).exit_code == 0
        assert conn.get_all_apps() == []
    finally:
        conn.stop_all(graceful=False)
