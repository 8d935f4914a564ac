"""Fixtures of the state-store suite: every test runs against SQLite and a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pluggy
import pytest

from clipper_core.plugins import get_plugin_manager
from clipper_core.store import StateStore, open_store
from clipper_core.testing.servers import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/nested/dir/state.db"
    server = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix=test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="session")
def builtin_pm() -> pluggy.PluginManager:
    """Built-in plugins only: installed framework plugins are slow to import and not needed."""
    return get_plugin_manager(load_entrypoints=False)


@pytest.fixture
def store(store_url: str, builtin_pm) -> Iterator[StateStore]:
    opened = open_store(store_url, builtin_pm)
    yield opened
    opened.close()

