"""The frontend side of the model-container RPC: one pyzmq ROUTER on the asyncio loop.

The socket's file descriptor is registered with ``loop.add_reader``. ZeroMQ signals that FD
edge-triggered, so every wake-up drains the socket until ``EVENTS`` says nothing waits, and
``EVENTS`` is checked again after the sends of each event-loop iteration (a send can consume
the edge of pending input; an ensemble's requests to several replicas are checked once).

With ``stream_address``, the router also listens on a Unix socket
(:mod:`clipper_core.rpc.stream`, for our runtime on the same host): each connection gets its
own routing identity and speaks the same messages, and a closed connection drops its replica
at once.

Each peer identity is a :class:`Session`. Heartbeats from an unknown identity are answered
with ``RequestContainerMetadata``, from a registered one with ``KeepAlive``. A registration
(spec §4.2) in version 3 (the original containers) or 4 (our runtime) creates the replica:
its id comes from the store, it is recorded there and handed to the listener. Every session is
spoken to in its own version. A replica silent for longer than its timeout, or one that says
goodbye (v4), is dropped. A replica the scheduler finds hung is *retired*
(:meth:`RpcRouter.retire`): dropped, told goodbye (v4: our runtime then exits and its backend
starts a new one) and ignored from then on, heartbeats included.

When the cluster has a replica secret, a registration must carry it; one without it is
admitted only from an RPC v3 container (the original's, which cannot send it) claiming a model
version the store holds with that input type (``admit_legacy_replicas``). A refused
container gets no queries (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any, Protocol, cast

import zmq

from clipper_core.exceptions import ClipperError
from clipper_core.rpc import protocol as p
from clipper_core.rpc import stream
from clipper_core.rpc.transport import recv_frames, send_frames
from clipper_core.store.api import StateStore
from clipper_core.types import InputType, Replica

log = logging.getLogger(__name__)

#: Messages handled per wake-up before yielding to the rest of the loop.
_DRAIN_LIMIT = 512
_CHECK_INTERVAL_S = 0.25
#: Retired identities remembered (and ignored); the oldest are forgotten beyond this.
_MAX_RETIRED = 1024
#: Refused identities remembered (to log each once); the set is emptied when full.
_REFUSED_LIMIT = 1024
#: Routing identities of Unix-socket connections start with this (ZeroMQ reserves identities
#: starting with a zero byte for its own, which are 5 bytes long).
_STREAM_PREFIX = b"\0uds"


class Listener(Protocol):
    """Who serves the replicas (the scheduler): told of every replica event directly."""

    def add_replica(self, session: Session, replica: Replica) -> Any:
        """A replica registered; returns the listener's per-replica state (``session.slot``)."""

    def remove_replica(self, slot: Any, why: str) -> None: ...
    def on_response(self, slot: Any, msg_id: int, outputs: Sequence[bytes]) -> None: ...
    def on_error(self, slot: Any, msg_id: int, message: str) -> None: ...


class Session:
    """One container connection (a DEALER identity)."""

    __slots__ = ("identity", "last_seen", "replica", "rpc_version", "slot", "timeout")

    def __init__(self, identity: bytes, rpc_version: int, timeout: float) -> None:
        self.identity = identity
        self.rpc_version = rpc_version
        self.timeout = timeout
        self.last_seen = time.monotonic()
        self.replica: Replica | None = None
        #: The listener's per-replica state, once registered.
        self.slot: Any = None


class RpcRouter:
    """Binds the ROUTER socket, tracks sessions and sends prediction requests."""

    def __init__(self, host: str, port: int, store: StateStore, frontend_id: str,
                 executor: Executor, *, replica_timeout_s: float,
                 legacy_replica_timeout_s: float, replica_secret: str | None = None,
                 admit_legacy_replicas: bool = True, stream_address: str | None = None) -> None:
        self.host = "*" if host in ("0.0.0.0", "") else host
        self.requested_port = port
        self.store = store
        self.frontend_id = frontend_id
        self.listener: Listener  # set by start()
        self.executor = executor
        self.replica_timeout_s = replica_timeout_s
        self.legacy_replica_timeout_s = legacy_replica_timeout_s
        self._secret = replica_secret.encode() if replica_secret else None
        self._admit_legacy = admit_legacy_replicas
        self.stream_address = stream_address
        #: The open Unix-socket connections by routing identity.
        self._streams: dict[bytes, _StreamPeer] = {}
        self._stream_server: asyncio.AbstractServer | None = None
        self.sessions: dict[bytes, Session] = {}
        self._registering: set[bytes] = set()
        self._retired: OrderedDict[bytes, None] = OrderedDict()
        self._refused: set[bytes] = set()
        self._msg_id = 0
        self._ctx: zmq.Context[Any] | None = None
        self._sock: zmq.Socket[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_scheduled = False
        self._checker: asyncio.Task[None] | None = None
        self.port = 0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, listener: Listener) -> None:
        """Bind the socket and hand every replica event to ``listener`` from now on."""
        self.listener = listener
        self._loop = asyncio.get_running_loop()
        self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        address = f"tcp://{self.host}:{self.requested_port or '*'}"
        try:
            sock.bind(address)
        except zmq.ZMQError as exc:
            sock.close(0)
            self._ctx.term()
            self._ctx = None
            msg = (f"Could not bind the model RPC listener on {address}: {exc}. Stop the "
                   "process using that port or choose another rpc_port")
            raise ClipperError(msg) from exc
        endpoint = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.port = int(endpoint.rsplit(":", 1)[1])
        self._sock = sock
        self._loop.add_reader(sock.getsockopt(zmq.FD), self._drain)
        if self.stream_address:
            self._listen_stream(self.stream_address)
        self._checker = self._loop.create_task(self._check_activity())
        self._schedule_drain()

    def _listen_stream(self, address: str) -> None:
        listener = stream.unix_socket()
        try:
            if not address.startswith("@"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(address)
            listener.bind(stream.socket_address(address))
            if not address.startswith("@"):
                os.chmod(address, 0o600)
            listener.listen(128)
        except OSError as exc:
            listener.close()
            msg = (f"Could not listen for local replicas on the Unix socket {address}: {exc}. "
                   "Stop the cluster using it, or set rpc_socket to another address (or none)")
            raise ClipperError(msg) from exc
        listener.setblocking(False)
        identities = (_STREAM_PREFIX + n.to_bytes(8, "little") for n in itertools.count())

        def connected() -> _StreamPeer:
            return _StreamPeer(self, next(identities))

        async def serve() -> None:
            assert self._loop is not None
            self._stream_server = await self._loop.create_unix_server(connected, sock=listener)

        assert self._loop is not None
        self._loop.create_task(serve())

    async def stop(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
        if self._stream_server is not None:
            self._stream_server.close()
            self._stream_server = None
        for peer in list(self._streams.values()):
            peer.transport.abort()
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.getsockopt(zmq.FD))
            self._sock.close(0)
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # -- sending ----------------------------------------------------------------------------
    def send_predict(self, session: Session, input_type: int, inputs: Sequence[bytes]) -> int:
        """Send a batch to ``session`` in its RPC version; returns the message id."""
        msg_id = self._msg_id
        self._msg_id = (msg_id + 1) & 0xFFFFFFFF
        self._send([session.identity,
                    *p.predict_request(session.rpc_version, msg_id, input_type, inputs)])
        return msg_id

    def _send(self, frames: list[bytes]) -> None:
        peer = self._streams.get(frames[0])
        if peer is not None:
            peer.transport.write(stream.encode(frames[1:]))
            return
        sock = self._sock
        if sock is None:
            return
        try:
            send_frames(sock, frames)
        except zmq.ZMQError as exc:
            log.warning("could not send to replica %r: %s", frames[0], exc)
        self._schedule_drain()

    def _schedule_drain(self) -> None:
        """Drain (or just check ``EVENTS``, if nothing waits) before the loop next blocks."""
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    # -- receiving --------------------------------------------------------------------------
    def _drain(self) -> None:
        self._drain_scheduled = False
        sock = self._sock
        if sock is None:
            return
        for _ in range(_DRAIN_LIMIT):
            frames = recv_frames(sock)
            if frames is None:
                return
            self._receive(frames)
        self._schedule_drain()

    def _receive(self, frames: list[bytes]) -> None:
        """Handle one message (``[identity, *frames]``) from either transport."""
        try:
            self._handle(frames)
        except (ValueError, struct.error) as exc:  # malformed: one line, no traceback
            log.warning("dropped a malformed message from %r: %s", frames[0], exc)
        except Exception:  # a bug must not stall the socket either
            log.exception("dropped a message from %r that could not be handled", frames[0])

    def _handle(self, frames: list[bytes]) -> None:
        identity = frames[0]
        msg_type, rest = p.parse_container_message(frames[1:])
        session = self.sessions.get(identity)
        if session is not None:
            session.last_seen = time.monotonic()
        elif identity in self._retired:
            return
        if msg_type == p.MSG_CONTAINER_CONTENT:
            if session is not None and session.slot is not None:
                msg_id, outputs = p.parse_response(rest, session.rpc_version)
                self.listener.on_response(session.slot, msg_id, outputs)
        elif msg_type == p.MSG_HEARTBEAT:
            if session is None:
                reply = p.heartbeat_reply(p.RPC_VERSION_LEGACY, p.HEARTBEAT_REQUEST_METADATA)
            else:
                reply = p.heartbeat_reply(session.rpc_version, p.HEARTBEAT_KEEPALIVE)
            self._send([identity, *reply])
        elif msg_type == p.MSG_NEW_CONTAINER:
            self._on_new_container(identity, rest)
        elif msg_type == p.MSG_ERROR:
            if session is not None and session.slot is not None:
                msg_id, message = p.parse_error(rest)
                self.listener.on_error(session.slot, msg_id, message)
        elif msg_type == p.MSG_GOODBYE:
            if session is not None:
                self._drop(session, "said goodbye")
        else:
            log.warning("unknown message type %d from %r", msg_type, identity)

    def _on_new_container(self, identity: bytes, rest: list[bytes]) -> None:
        if identity in self.sessions or identity in self._registering:
            return
        name, version, type_code, rpc_version, secret = p.parse_new_container(rest)
        if rpc_version not in p.SUPPORTED_VERSIONS:
            log.warning("container %s:%s speaks RPC version %d; this frontend speaks %s",
                        name, version, rpc_version, p.SUPPORTED_VERSIONS)
            return
        input_type = InputType(type_code)
        check_store = False
        if self._secret is not None:
            if secret is not None and not hmac.compare_digest(secret, self._secret):
                self._refuse(identity, name, version, "it presented a wrong replica secret")
                return
            if secret is None:
                if rpc_version >= p.RPC_VERSION or not self._admit_legacy:
                    self._refuse(identity, name, version, "it presented no replica secret")
                    return
                check_store = True
        timeout = (self.replica_timeout_s if rpc_version >= p.RPC_VERSION
                   else self.legacy_replica_timeout_s)
        session = Session(identity, rpc_version, timeout)
        self._registering.add(identity)
        assert self._loop is not None
        self._loop.create_task(self._register(session, name, version, input_type, check_store))

    def _refuse(self, identity: bytes, name: str, version: str, why: str) -> None:
        """Log (once per identity) that a container's registration is refused."""
        if identity in self._refused:
            return
        if len(self._refused) >= _REFUSED_LIMIT:
            self._refused.clear()
        self._refused.add(identity)
        log.warning("refused a container registering as %s:%s: %s (docs/security.md)",
                    name, version, why)

    async def _register(self, session: Session, name: str, version: str,
                        input_type: InputType, check_store: bool) -> None:
        """Admit a container; with ``check_store``, only for a model version the store holds
        with that input type."""
        loop = asyncio.get_running_loop()
        try:
            if check_store:
                model = await loop.run_in_executor(
                    self.executor, self.store.get_model_version, name, version)
                if model is None or model.input_type != input_type:
                    self._refuse(session.identity, name, version,
                                 "it presented no replica secret and the store holds no such "
                                 f"model version with {input_type.canonical} inputs")
                    return
            replica_id = await loop.run_in_executor(
                self.executor, self.store.next_replica_id, name, version)
            if session.identity.startswith(_STREAM_PREFIX) and (
                    session.identity not in self._streams):
                return  # the connection closed while the store was asked
            replica = Replica(name, version, replica_id, input_type, self.frontend_id)
            session.replica = replica
            session.last_seen = time.monotonic()
            self.sessions[session.identity] = session
            session.slot = self.listener.add_replica(session, replica)
            log.info("replica %s connected (RPC v%d)", replica, session.rpc_version)
            await loop.run_in_executor(self.executor, self.store.add_replica, replica)
        except Exception:
            log.exception("registering a replica of %s:%s failed", name, version)
        finally:
            self._registering.discard(session.identity)

    def retire(self, session: Session, why: str) -> None:
        """Drop a replica that hangs though it may heartbeat, tell it so, ignore it from now."""
        if session.identity not in self.sessions:
            return
        if session.rpc_version >= p.RPC_VERSION:
            self._send([session.identity, *p.goodbye_request(session.rpc_version)])
        self._retired[session.identity] = None
        if len(self._retired) > _MAX_RETIRED:
            self._retired.popitem(last=False)
        self._drop(session, why)

    def _drop(self, session: Session, why: str) -> None:
        if self.sessions.pop(session.identity, None) is None:
            return
        peer = self._streams.get(session.identity)
        if peer is not None:  # what was written (a goodbye) is flushed first
            peer.transport.close()
        replica = session.replica
        log.info("replica %s dropped: %s", replica, why)
        if session.slot is not None:
            self.listener.remove_replica(session.slot, why)
        if replica is not None and self._loop is not None:
            self._loop.run_in_executor(self.executor, self._forget, replica)

    def _forget(self, replica: Replica) -> None:
        try:
            self.store.remove_replica(replica)
        except Exception:
            log.exception("could not remove replica %s from the store", replica)

    async def _check_activity(self) -> None:
        while True:
            await asyncio.sleep(_CHECK_INTERVAL_S)
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if now - session.last_seen > session.timeout:
                    self._drop(session, f"silent for more than {session.timeout:g} s")


class _StreamPeer(asyncio.Protocol):
    """One replica's Unix-socket connection: its messages go to the router as ``[identity,
    *frames]``, as a ROUTER socket would hand them over."""

    def __init__(self, router: RpcRouter, identity: bytes) -> None:
        self.router = router
        self.identity = identity
        self.decoder = stream.Decoder()
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.router._streams[self.identity] = self

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except stream.StreamError as exc:
            log.warning("closed a local replica connection that sent %s", exc)
            self.transport.abort()
            return
        for frames in messages:
            self.router._receive([self.identity, *frames])

    def connection_lost(self, exc: Exception | None) -> None:
        router = self.router
        router._streams.pop(self.identity, None)
        session = router.sessions.get(self.identity)
        if session is not None:
            router._drop(session, "closed its connection")
