"""clipper_core.testing.servers: the real redis-server helper other suites rely on."""

from __future__ import annotations

import socket

import pytest
import redis

from clipper_core.exceptions import ClipperError
from clipper_core.testing.servers import RedisServer, free_port, wait_until


def test_redis_server_restarts_on_the_same_port() -> None:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert server.running
        server.stop()
        assert not server.running
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(server.url).ping()
        server.start()
        assert redis.Redis.from_url(server.url).ping()
        client.close()
    assert not server.running


def test_redis_server_reports_a_port_it_cannot_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = RedisServer(port=port)
        with pytest.raises(ClipperError, match=f"redis-server did not start on port {port}"):
            server.start(timeout_s=0.5)
        server.close()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_until() -> None:
    calls = []
    wait_until(lambda: calls.append(1) or len(calls) > 2)
    assert len(calls) == 3
    with pytest.raises(TimeoutError, match=r"the thing not met within 0\.05 s"):
        wait_until(lambda: False, 0.05, "the thing")
