"""The replica's RPC loop.

The main thread owns the connection to the frontend (a :mod:`channel <clipper_core.runtime.
channel>`: a ZeroMQ DEALER, or a Unix socket when ``CLIPPER_RPC_SOCKET`` names the frontend's
local one): it polls, heartbeats, registers, decodes each batch,
calls the model and sends the reply. While the model runs it lends the socket (a lock it
otherwise always holds) to a heartbeat thread, which keeps heartbeating every interval until
the model returns. A batch therefore costs no thread handoff (measured at ~70 µs per batch on
this project's CI machine, against ~0.2 µs for the lock), and heartbeats still flow while a
long batch runs. ZeroMQ allows a socket to move between threads behind a full memory barrier;
the lock is that barrier.

SIGTERM and SIGINT wake the poll through the signal wakeup fd, or, while the model runs,
interrupt it the way KeyboardInterrupt would; either way the replica sends a goodbye and exits.

While the model runs, the heartbeat thread also reads what the frontend sends, keeping it for
the main thread, except a goodbye: the frontend found the model hung (no answer in time) and
dropped this replica, so the process exits at once with :data:`RETIRED_EXIT_CODE` and its
backend (supervisor, Docker) starts a fresh one. A goodbye read between batches makes the
replica reconnect with a new socket instead.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from collections import deque
from types import FrameType
from typing import Any

import zmq

from clipper_core.deployers.api import Predictor
from clipper_core.rpc import protocol as rpc
from clipper_core.runtime.channel import StreamChannel, ZmqChannel
from clipper_core.runtime.codec import PredictionError, decode_inputs, encode_outputs
from clipper_core.runtime.config import RuntimeConfig
from clipper_core.types import InputType

log = logging.getLogger("clipper_core.runtime")

#: How long a closing socket may take to deliver the goodbye.
GOODBYE_LINGER_MS = 500
#: Registration requests answered before warning that the frontend does not accept us.
PATIENT_REGISTRATIONS = 10
#: Exit status of a replica the frontend dropped as hung (EX_TEMPFAIL: start it again).
RETIRED_EXIT_CODE = 75
#: Longest wait between two tries to connect to the frontend's Unix socket.
MAX_CONNECT_DELAY_S = 1.0
#: Pause before reconnecting to a frontend that closed the connection.
RECONNECT_PAUSE_S = 0.1

Channel = ZmqChannel | StreamChannel
#: ``zmq.Poller``, or ``select.poll()`` for a Unix socket (both register, unregister, poll).
Poller = Any


class _Shutdown(BaseException):
    """Raised by the signal handler into a running model to stop the replica."""


def describe(exc: BaseException) -> str:
    """``Type: first line of text`` of an exception: the message an error reply carries."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class ModelRuntime:
    """Serve ``predict`` to the query frontend at ``config.address`` until stopped."""

    def __init__(self, config: RuntimeConfig, predict: Predictor, input_type: InputType) -> None:
        self.config = config
        self.predict = predict
        self.input_type = input_type
        self._registration = rpc.new_container_message(
            config.model_name, config.model_version, input_type, rpc.RPC_VERSION,
            config.replica_secret)
        self._channel: Channel | None = None
        #: Held by the main thread except while the model runs.
        self._sock_lock = threading.Lock()
        self._holding_sock = False
        self._in_predict = False
        self._stopping = False
        self._stopped = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._metadata_requests = 0
        self._version_warned = False
        #: Messages the heartbeat thread read while the model ran, for the main thread.
        self._unread: deque[list[memoryview] | list[bytes]] = deque()
        #: When the heartbeat thread last read a message: the frontend was alive then.
        self._unread_at = 0.0
        #: Set when the frontend said goodbye: reconnect with a new socket.
        self._dropped = False

    # ---------------------------------------------------------------------------------------
    # Life cycle
    # ---------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to say goodbye and return (safe from any thread)."""
        self._stopping = True
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:  # the pipe is full, so the loop is awake anyway
            pass

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:  # a second signal must not interrupt the goodbye
            return
        self._stopping = True
        if self._in_predict:
            raise _Shutdown

    def serve(self) -> None:
        """Run until :meth:`stop`, SIGTERM or SIGINT (signals only when run in the main thread)."""
        if threading.current_thread() is threading.main_thread():
            signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        heartbeater = threading.Thread(target=self._heartbeat_during_predicts,
                                       name="clipper-heartbeat", daemon=True)
        context = zmq.Context()
        self._sock_lock.acquire()
        self._holding_sock = True
        heartbeater.start()
        try:
            self._loop(context)
        except _Shutdown:
            pass
        finally:
            self._stopped.set()
            if not self._holding_sock:  # interrupted while the model ran
                self._sock_lock.acquire()
                self._holding_sock = True
            self._say_goodbye()
            heartbeater.join()
            context.term()
            if threading.current_thread() is threading.main_thread():
                signal.set_wakeup_fd(-1)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _say_goodbye(self) -> None:
        if self._channel is None:
            return
        log.info("Stopping: sending goodbye to the query frontend")
        self._channel.send(rpc.GOODBYE_MESSAGE)
        self._channel.close(linger_ms=GOODBYE_LINGER_MS)
        self._channel = None

    def _heartbeat_during_predicts(self) -> None:
        while not self._stopped.wait(self.config.heartbeat_interval_s):
            if self._in_predict and self._sock_lock.acquire(blocking=False):
                try:
                    if self._in_predict and self._channel is not None:
                        self._channel.send(rpc.HEARTBEAT_MESSAGE)
                        self._read_while_predicting(self._channel)
                finally:
                    self._sock_lock.release()

    def _read_while_predicting(self, channel: Channel) -> None:
        """Keep what arrived for the main thread; exit if the frontend gave up on the model."""
        while channel.has_message():
            frames = channel.recv()
            if _is_goodbye(frames):
                log.error("The query frontend dropped this replica: the model did not answer "
                          "a batch in time (hung). Exiting with code %d so that a new replica "
                          "is started", RETIRED_EXIT_CODE)
                for handler in logging.getLogger().handlers:
                    handler.flush()
                os._exit(RETIRED_EXIT_CODE)
            self._unread.append(frames)
            self._unread_at = time.monotonic()

    # ---------------------------------------------------------------------------------------
    # The loop (main thread, holding the socket)
    # ---------------------------------------------------------------------------------------

    def _loop(self, context: zmq.Context) -> None:
        cfg = self.config
        interval, timeout = cfg.heartbeat_interval_s, cfg.activity_timeout_s
        # A Unix socket needs no ZeroMQ poller, which costs a second poll(2) per wake-up.
        poller: Poller = select.poll() if cfg.rpc_socket else zmq.Poller()
        poller.register(self._wake_r, select.POLLIN)
        channel = self._open(context, poller)
        connected = False
        last_recv = last_heartbeat = time.monotonic()
        while not self._stopping:
            if connected:
                due = min(last_heartbeat + interval, last_recv + timeout) - time.monotonic()
                events = poller.poll(max(due, 0.0) * 1000)
            else:  # the first heartbeat stays queued until the frontend is reachable
                events = poller.poll()
            now = time.monotonic()
            for source, _ in events:
                if source == self._wake_r:
                    _drain(self._wake_r)
                    continue
                if not connected and not channel.closed:
                    log.info("Connected to the query frontend at %s", self._where())
                    connected, last_heartbeat = True, now
                while not self._stopping and channel.has_message():
                    last_recv = time.monotonic()  # a batch may have run since the poll
                    self._on_message(channel, channel.recv())
                    while self._unread and not self._stopping:
                        self._on_message(channel, self._unread.popleft())
                    # what the heartbeat thread read during a long batch is activity too
                    last_recv = max(last_recv, self._unread_at)
            if self._stopping:
                continue
            now = time.monotonic()
            if channel.closed or (connected and (now - last_recv >= timeout or self._dropped)):
                if channel.closed:
                    log.warning("The query frontend closed the connection; reconnecting to %s",
                                self._where())
                    self._pause(RECONNECT_PAUSE_S)
                elif self._dropped:
                    log.warning("The query frontend dropped this replica; reconnecting to %s "
                                "with a new socket", self._where())
                else:
                    log.warning("No message from the query frontend for %.1f s; reconnecting "
                                "to %s with a new socket", now - last_recv, self._where())
                self._dropped = False
                self._unread.clear()
                poller.unregister(channel.pollable)
                channel.close()
                channel = self._open(context, poller)
                connected = False
                last_recv = last_heartbeat = time.monotonic()
            elif connected and now - last_heartbeat >= interval:
                channel.send(rpc.HEARTBEAT_MESSAGE)
                last_heartbeat = now

    def _where(self) -> str:
        return self.config.rpc_socket or self.config.address

    def _open(self, context: zmq.Context, poller: Poller) -> Channel:
        channel = (self._connect_stream(self.config.rpc_socket) if self.config.rpc_socket
                   else ZmqChannel(context, self.config.address))
        channel.send(rpc.HEARTBEAT_MESSAGE)
        poller.register(channel.pollable, select.POLLIN)
        self._channel = channel
        self._metadata_requests = 0
        self._version_warned = False
        return channel

    def _pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``; a signal or :meth:`stop` ends it sooner."""
        if select.select([self._wake_r], [], [], seconds)[0]:
            _drain(self._wake_r)

    def _connect_stream(self, address: str) -> StreamChannel:
        """Connect to the frontend's Unix socket, trying again until it listens or we stop."""
        delay, tries = 0.05, 0
        while True:
            try:
                return StreamChannel.connect(address)
            except OSError as exc:
                tries += 1
                if tries == 1 or tries % 30 == 0:
                    log.info("Waiting for the query frontend's socket %s (%s)", address, exc)
            self._pause(delay)
            if self._stopping:
                raise _Shutdown
            delay = min(delay * 2, MAX_CONNECT_DELAY_S)

    def _on_message(self, channel: Channel, frames: list[memoryview] | list[bytes]) -> None:
        try:
            version, kind, rest = rpc.parse_frontend_message(frames)
        except rpc.ProtocolError as exc:
            log.error("Ignored a malformed message from the query frontend: %s", exc)
            return
        if version not in rpc.SUPPORTED_VERSIONS and not self._version_warned:
            self._version_warned = True
            log.error("The query frontend speaks RPC version %d; this runtime speaks %s",
                      version, " and ".join(map(str, rpc.SUPPORTED_VERSIONS)))
        if kind == rpc.MSG_CONTAINER_CONTENT:
            if rest:
                channel.send(self.handle_predict(version, rest))
            else:
                log.error("Ignored a predict request without a message id")
        elif kind == rpc.MSG_HEARTBEAT:
            if rest and rpc.read_u32(rest[0]) == rpc.HEARTBEAT_REQUEST_METADATA:
                self._register(channel)
        elif kind == rpc.MSG_GOODBYE:
            self._dropped = True
        elif kind == rpc.MSG_NEW_CONTAINER:
            log.error("Received erroneous new container message from the query frontend")
        else:
            log.error("Ignored a message of unknown type %d from the query frontend", kind)

    def _register(self, channel: Channel) -> None:
        channel.send(self._registration)
        self._metadata_requests += 1
        cfg = self.config
        if self._metadata_requests == 1:
            log.info("Registered %s:%s (%s inputs, RPC version %d) with the query frontend",
                     cfg.model_name, cfg.model_version, self.input_type.canonical, rpc.RPC_VERSION)
        elif self._metadata_requests == PATIENT_REGISTRATIONS:
            log.warning("The query frontend asked for registration %d times: it does not accept "
                        "%s:%s. Is this model version registered, and is "
                        "CLIPPER_REPLICA_SECRET the cluster's?", PATIENT_REGISTRATIONS,
                        cfg.model_name, cfg.model_version)

    # ---------------------------------------------------------------------------------------
    # One batch
    # ---------------------------------------------------------------------------------------

    def handle_predict(self, version: int, rest: list[memoryview]) -> list[bytes]:
        """Decode one predict request, run the model, and build the reply or an error reply.

        Called holding the socket; the socket is lent to the heartbeat thread while the model
        runs.
        """
        msg_id = bytes(rest[0])
        try:
            _, input_type, sizes, data = rpc.parse_predict_request(rest, version)
            if input_type != self.input_type:
                msg = (f"the request carries {_type_name(input_type)} inputs but this replica "
                       f"serves {self.input_type.canonical}")
                raise PredictionError(msg)
            batch = decode_inputs(self.input_type, sizes, data if version >= rpc.RPC_VERSION
                                  else b"".join(data))
        except Exception as exc:
            log.error("Rejected a malformed predict request: %s", describe(exc))
            return rpc.error_message(msg_id, describe(exc))
        self._holding_sock = False
        self._sock_lock.release()
        # From here until the lock is taken back, a signal may raise _Shutdown (serve() then
        # takes the lock back itself).
        try:
            self._in_predict = True
            predictions = self.predict(batch)
            self._in_predict = False
        except Exception as exc:
            self._in_predict = False
            failure: BaseException | None = exc
        else:
            failure = None
        self._sock_lock.acquire()
        self._holding_sock = True
        if failure is not None:
            log.error("The model raised on a batch of %d inputs", len(sizes), exc_info=failure)
            return rpc.error_message(msg_id, describe(failure))
        try:
            outputs = encode_outputs(predictions, len(sizes))
        except Exception as exc:
            log.error("Invalid model output: %s", describe(exc))
            return rpc.error_message(msg_id, describe(exc))
        return rpc.response_message(msg_id, outputs, version)


def _is_goodbye(frames: list[memoryview] | list[bytes]) -> bool:
    return len(frames) >= 3 and rpc.read_u32(frames[2]) == rpc.MSG_GOODBYE


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _type_name(code: int) -> str:
    try:
        return InputType(code).canonical
    except ValueError:
        return f"unknown (code {code})"
