"""A real QueryFrontend on a SQLite store, real replica processes, and a hand-written RPC v3
container, for the query-path integration tests."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import requests
import uvloop
import zmq

from clipper_core.config import ClusterConfig
from clipper_core.deployers.api import write_bundle
from clipper_core.deployers.python import PythonDeployer
from clipper_core.frontend.query import QueryFrontend
from clipper_core.plugins import get_plugin_manager
from clipper_core.store import open_store
from clipper_core.types import Application, InputType, ModelVersion

PR_SET_PDEATHSIG = 1
#: Looked up before any fork: the child only calls it.
_prctl = ctypes.CDLL(None).prctl


def _die_with_parent() -> None:
    """In the replica: get SIGKILL if the test process dies (no orphans after a crash)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Cluster:
    """A query frontend running on its own uvloop thread, and the replicas the test starts."""

    def __init__(self, tmp: Path, store_url: str | None = None, **config: Any) -> None:
        self.tmp = tmp
        store_url = store_url or f"sqlite:///{tmp}/state.db"
        self.store = open_store(store_url, get_plugin_manager(load_entrypoints=False))
        self.config = ClusterConfig(bind_host="127.0.0.1", query_port=0, rpc_port=0,
                                    store_url=store_url, **config)
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        # Only the built-in plugins: these tests must not depend on what else is installed.
        self.frontend = QueryFrontend(self.config, self.store,
                                      get_plugin_manager(load_entrypoints=False))
        self.call(self.frontend.start())
        self.url = f"http://127.0.0.1:{self.frontend.port}"
        self.session = requests.Session()
        self.processes: list[subprocess.Popen[bytes]] = []

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        self.call(self.frontend.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.store.close()

    # -- state ------------------------------------------------------------------------------
    def add_app(self, name: str, input_type: str = "doubles", default: str = "DEFAULT",
                slo_micros: int = 5_000_000, model: str | None = None) -> None:
        self.store.add_application(Application(name, InputType.parse(input_type), default,
                                               slo_micros))
        if model is not None:
            self.store.add_link(name, model)
        wait_for(lambda: self.post(f"/{name}/predict", {}).status_code != 404,
                 what=f"the frontend to serve app {name}")

    def add_model(self, name: str, version: str = "1", input_type: str = "doubles",
                  batch_size: int = -1) -> None:
        self.store.add_model_version(ModelVersion(name, version, InputType.parse(input_type),
                                                  image="local", batch_size=batch_size))

    def start_replica(self, name: str, version: str, func: Callable[..., Any],
                      input_type: str = "doubles", wait: bool = True,
                      rpc_socket: str | None = None) -> subprocess.Popen[bytes]:
        """Start a replica of our runtime; with ``rpc_socket`` it connects to the frontend's
        Unix socket (the cluster's ``rpc_socket``) instead of its TCP port."""
        bundle = self.tmp / f"bundle-{name}-{version}-{len(self.processes)}"
        # Test modules are not importable by the replica: pickle their functions by value.
        module = sys.modules.get(func.__module__)
        if module is not None and func.__module__ not in ("builtins", "__main__"):
            cloudpickle.register_pickle_by_value(module)
        write_bundle(PythonDeployer(), bundle, input_type, func)
        env = dict(os.environ, CLIPPER_MODEL_NAME=name, CLIPPER_MODEL_VERSION=version,
                   CLIPPER_IP="127.0.0.1", CLIPPER_PORT=str(self.frontend.rpc_port),
                   CLIPPER_INPUT_TYPE=input_type, CLIPPER_MODEL_PATH=str(bundle),
                   CLIPPER_READY_FILE=str(bundle / "ready"), CLIPPER_RPC_SOCKET=rpc_socket or "")
        before = self.replica_count(name, version)
        log = (self.tmp / f"{bundle.name}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "clipper_core.runtime"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=_die_with_parent)
        log.close()
        self.processes.append(process)
        if wait:
            self.wait_replicas(name, version, before + 1)
        return process

    def replica_count(self, name: str, version: str) -> int:
        return sum(1 for r in self.store.list_replicas()
                   if (r.model_name, r.model_version) == (name, version))

    def wait_replicas(self, name: str, version: str, n: int, timeout: float = 30.0) -> None:
        wait_for(lambda: self.replica_count(name, version) == n, timeout,
                 f"{n} replicas of {name}:{version}")

    # -- queries ----------------------------------------------------------------------------
    def post(self, path: str, body: Any = None, data: bytes | None = None,
             **kwargs: Any) -> requests.Response:
        if data is not None:
            return self.session.post(self.url + path, data=data, timeout=60, **kwargs)
        return self.session.post(self.url + path, json=body, timeout=60, **kwargs)

    def predict(self, app: str, body: Any) -> dict[str, Any]:
        response = self.post(f"/{app}/predict", body)
        assert response.status_code == 200, response.text
        return response.json()

    def metric(self, name: str) -> dict[str, str]:
        report = self.session.get(self.url + "/metrics", timeout=10).json()
        for items in report.values():
            for item in items:
                if name in item:
                    return item[name]
        raise KeyError(name)


def _factory(tmp: pytest.TempPathFactory) -> Iterator[Callable[..., Cluster]]:
    clusters: list[Cluster] = []

    def make(store_url: str | None = None, **config: Any) -> Cluster:
        cluster = Cluster(tmp.mktemp("cluster"), store_url, **config)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()


@pytest.fixture
def make_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Cluster]]:
    """Start a cluster (frontend + store) for one test: ``make_cluster(**config)``."""
    yield from _factory(tmp_path_factory)


@pytest.fixture(scope="module")
def make_module_cluster(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Cluster]]:
    """Same, shared by the tests of one module."""
    yield from _factory(tmp_path_factory)


@pytest.fixture
def legacy_container() -> Iterator[Callable[..., LegacyContainer]]:
    """Start hand-written RPC v3 containers: ``legacy_container(port, name, ...)``."""
    containers: list[LegacyContainer] = []

    def start(*args: Any) -> LegacyContainer:
        container = LegacyContainer(*args)
        containers.append(container)
        return container

    yield start
    for container in containers:
        container.stop()


# -------------------------------------------------------------------------------------------
# A model container speaking the original RPC v3, written from spec §4 (not our runtime)
# -------------------------------------------------------------------------------------------


class LegacyContainer:
    """Clipper's Python container protocol, minimal: DEALER, heartbeats, v3 frames."""

    def __init__(self, port: int, name: str, version: str, input_type: int,
                 predict: Callable[[list[bytes]], list[bytes]], secret: bytes = b"") -> None:
        """``secret``: our optional replica-secret frame after the RPC version."""
        self.port = port
        self.secret = secret
        self.registrations = 0
        self.name = name
        self.version = version
        self.input_type = input_type
        self.predict = predict
        self.stop_event = threading.Event()
        self.received_types: list[int] = []
        self.bad_versions: list[int] = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{self.port}")
        sock.send_multipart([b"", struct.pack("<I", 2)])  # heartbeat
        last_heartbeat = time.monotonic()
        try:
            while not self.stop_event.is_set():
                if sock.poll(100):
                    frames = sock.recv_multipart()
                    self.handle(sock, frames)
                if time.monotonic() - last_heartbeat > 1.0:
                    sock.send_multipart([b"", struct.pack("<I", 2)])
                    last_heartbeat = time.monotonic()
        finally:
            sock.close(0)
            ctx.term()

    def handle(self, sock: zmq.Socket[Any], frames: list[bytes]) -> None:
        assert frames[0] == b""
        (rpc_version,) = struct.unpack("<I", frames[1])
        if rpc_version != 3:
            self.bad_versions.append(rpc_version)
        (msg_type,) = struct.unpack("<I", frames[2])
        self.received_types.append(msg_type)
        if msg_type == 2:  # heartbeat
            (heartbeat_type,) = struct.unpack("<I", frames[3])
            if heartbeat_type == 1:  # RequestContainerMetadata
                sock.send_multipart([b"", struct.pack("<I", 0), self.name.encode(),
                                     self.version.encode(), str(self.input_type).encode(),
                                     struct.pack("<I", 3), *([self.secret] if self.secret
                                                             else [])])
                self.registrations += 1
        elif msg_type == 1:  # ContainerContent
            msg_id = frames[3]
            (request_type,) = struct.unpack("<I", frames[4])
            assert request_type == 0
            (header_len,) = struct.unpack("<Q", frames[5])
            header = struct.unpack(f"<{header_len // 8}Q", frames[6])
            input_type, n, sizes = header[0], header[1], header[2:]
            assert input_type == self.input_type and len(sizes) == n
            inputs = frames[7:7 + n]
            assert [len(x) for x in inputs] == list(sizes)
            outputs = self.predict(inputs)
            out_header = struct.pack(f"<{n + 1}Q", n, *map(len, outputs))
            sock.send_multipart([b"", struct.pack("<I", 1), msg_id,
                                 struct.pack("<Q", len(out_header)), out_header, *outputs])

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
