"""A test frontend (a real ROUTER socket speaking the RPC protocol) and real runtime processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import zmq

from clipper_core.deployers.api import write_bundle
from clipper_core.deployers.python import PythonDeployer
from clipper_core.rpc import protocol as rpc


@attrs.define
class Registration:
    identity: bytes
    name: str
    version: str
    input_type: int
    rpc_version: int


class TestFrontend:
    """The frontend side of the protocol, driven step by step by a test."""

    __test__ = False

    def __init__(self, port: int = 0) -> None:
        self.context = zmq.Context()
        self.router: zmq.Socket | None = None
        self.port = port
        self.registered: set[bytes] = set()
        self.heartbeats: list[tuple[float, bytes]] = []
        self.goodbyes: list[bytes] = []
        self.msg_id = 0
        #: Whether :meth:`recv` answers heartbeats (a test may make the frontend go quiet).
        self.answer_heartbeats = True
        self.bind()

    def bind(self) -> None:
        self.router = self.context.socket(zmq.ROUTER)
        self.router.linger = 0
        if self.port:
            deadline = time.monotonic() + 10
            while True:
                try:
                    self.router.bind(f"tcp://127.0.0.1:{self.port}")
                    break
                except zmq.ZMQError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        else:
            self.port = self.router.bind_to_random_port("tcp://127.0.0.1")

    def unbind(self) -> None:
        assert self.router is not None
        self.router.close(linger=0)
        self.router = None
        self.registered.clear()

    def close(self) -> None:
        if self.router is not None:
            self.router.close(linger=0)
            self.router = None
        if not self.context.closed:
            self.context.term()

    def recv(self, timeout: float) -> list[bytes] | None:
        """One message (identity first), answering heartbeats as the real frontend does."""
        assert self.router is not None
        if not self.router.poll(timeout * 1000):
            return None
        frames = self.router.recv_multipart()
        identity, kind = frames[0], rpc.read_u32(frames[2])
        if kind == rpc.MSG_HEARTBEAT:
            self.heartbeats.append((time.monotonic(), identity))
            if not self.answer_heartbeats:
                return frames
            hb_type = 0 if identity in self.registered else rpc.HEARTBEAT_REQUEST_METADATA
            self.router.send_multipart([identity, *rpc.heartbeat_reply(rpc.RPC_VERSION, hb_type)])
        elif kind == rpc.MSG_GOODBYE:
            self.goodbyes.append(identity)
        return frames

    def wait_for(self, kind: int, timeout: float) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            frames = self.recv(left)
            if frames is not None and rpc.read_u32(frames[2]) == kind:
                return frames
        raise AssertionError(f"no message of type {kind} within {timeout} s")

    def wait_registration(self, timeout: float = 60) -> Registration:
        frames = self.wait_for(rpc.MSG_NEW_CONTAINER, timeout)
        name, version, input_type, rpc_version, _ = rpc.parse_new_container(frames[3:])
        self.registered.add(frames[0])
        return Registration(frames[0], name, version, input_type, rpc_version)

    def send_predict(self, identity: bytes, input_type: int, inputs: Sequence[bytes],
                     version: int = rpc.RPC_VERSION) -> int:
        assert self.router is not None
        self.msg_id += 1
        message = rpc.predict_request(version, self.msg_id, input_type, inputs)
        self.router.send_multipart([identity, *message])
        return self.msg_id

    def predict(self, identity: bytes, input_type: int, inputs: Sequence[bytes],
                timeout: float = 20, version: int = rpc.RPC_VERSION) -> tuple[str, Any]:
        """``("ok", outputs)`` or ``("error", message)`` for one batch."""
        msg_id = self.send_predict(identity, input_type, inputs, version)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            frames = self.recv(left)
            if frames is None:
                break
            kind, rest = rpc.parse_container_message(frames[1:])
            if kind == rpc.MSG_CONTAINER_CONTENT:
                got_id, outputs = rpc.parse_response(rest, version)
                assert got_id == msg_id
                return "ok", [bytes(o).decode() for o in outputs]
            if kind == rpc.MSG_ERROR:
                got_id, message = rpc.parse_error(rest)
                assert got_id == msg_id
                return "error", message
        raise AssertionError(f"no reply to request {msg_id} within {timeout} s")


@pytest.fixture
def make_frontend() -> Iterator[Callable[[int], TestFrontend]]:
    """``make_frontend(port=0)``: a test frontend on ``port`` (0: a free one), closed after."""
    made: list[TestFrontend] = []

    def make(port: int = 0) -> TestFrontend:
        made.append(TestFrontend(port))
        return made[-1]

    yield make
    for fe in made:
        fe.close()


@pytest.fixture
def frontend(make_frontend: Callable[[int], TestFrontend]) -> TestFrontend:
    return make_frontend(0)


class Replica:
    """A runtime subprocess; stderr goes to a file the test can read."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.log_path = tmp_path / f"runtime-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPPER_")}
        full_env.update(env)
        self.proc = subprocess.Popen([sys.executable, "-m", "clipper_core.runtime"],
                                     env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait(self, timeout: float = 20) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def start_replica(tmp_path: Path) -> Iterator[Callable[..., Replica]]:
    """``start_replica(func, input_type, port, **env)``: write a bundle and run the runtime.

    ``func=None`` writes no bundle; an ``env`` value of None removes that variable.
    """
    replicas: list[Replica] = []

    def start(func: Callable[..., Any] | None, input_type: str = "doubles", port: int = 0,
              **env: str | None) -> Replica:
        bundle_dir = tmp_path / f"bundle-{len(replicas)}"
        if func is not None:
            write_bundle(PythonDeployer(), bundle_dir, input_type, func)
        base = {
            "CLIPPER_MODEL_NAME": "m",
            "CLIPPER_MODEL_VERSION": "1",
            "CLIPPER_IP": "127.0.0.1",
            "CLIPPER_PORT": str(port),
            "CLIPPER_INPUT_TYPE": input_type,
            "CLIPPER_MODEL_PATH": str(bundle_dir),
            "CLIPPER_READY_FILE": str(tmp_path / "ready.check"),
        }
        merged = {**base, **env}
        replica = Replica(tmp_path, {k: v for k, v in merged.items() if v is not None})
        replicas.append(replica)
        return replica

    yield start
    for replica in replicas:
        replica.stop()
