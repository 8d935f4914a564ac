"""Real servers for tests: a throwaway ``redis-server`` on a free port.

Usage::

    with RedisServer() as redis:          # started on a free port, data in a temp dir
        store = RedisStore.from_url(redis.url)
        redis.stop()                       # simulate an outage...
        redis.start()                      # ...and bring it back on the same port

Nothing here is a mock: the binary is the one on ``PATH`` (or ``/usr/bin/redis-server``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from clipper_core.exceptions import ClipperError

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout_s: float = 5.0, what: str = "") -> None:
    """Poll ``condition`` every 10 ms until it is true; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            msg = f"{what or 'condition'} not met within {timeout_s:g} s"
            raise TimeoutError(msg)
        time.sleep(0.01)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RedisServer:
    """A ``redis-server`` process on ``127.0.0.1:<free port>`` without persistence."""

    def __init__(self, port: int | None = None, binary: str = REDIS_SERVER) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.binary = binary
        self._dir = tempfile.TemporaryDirectory(prefix="clipper-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start (or restart, on the same port) and wait until it accepts connections."""
        if self.running:
            return self
        log = Path(self._dir.name) / "redis.log"
        self._proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", self.host, "--save", "",
             "--appendonly", "no", "--dir", self._dir.name, "--logfile", str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # A safety net: the process dies with this object or this interpreter at the latest.
        weakref.finalize(self, _terminate, self._proc)
        deadline = time.monotonic() + timeout_s
        while not self._answers_ping():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                msg = f"redis-server did not start on port {self.port}; see {log}"
                raise ClipperError(msg)
            time.sleep(0.02)
        return self

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the process (its data is gone: nothing is persisted)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
