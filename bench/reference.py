"""The reference server: nginx (Debian ``nginx-light``) answering every POST with a fixed
predict-shaped JSON body, one worker process, on the cores of the system under test.

Under :data:`BODY_PREFIX` it first reads the whole request body into one buffer (the echo
module's ``echo_read_request_body``, then an internal redirect to the fixed answer, which
carries the bytes it read as ``output``): the reference for large inputs. Elsewhere it answers
at once and discards the body, which for the 10-double bodies arrive in the same read anyway.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests

from bench import BenchError

#: What nginx answers: the shape of a query frontend's prediction.
REFERENCE_BODY = '{"query_id":1,"output":6.6,"default":false}'

#: Paths under this prefix make nginx read the whole body before it answers.
BODY_PREFIX = "/body"
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")

_CONF = """\
load_module {echo_module};
worker_processes 1;
master_process off;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
        location {body_prefix}/ {{
            client_max_body_size 16m;
            client_body_buffer_size 1m;
            client_body_in_single_buffer on;
            echo_read_request_body;
            echo_exec @answer_after_body;
        }}
        location @answer_after_body {{
            default_type application/json;
            return 200 '{body_read}';
        }}
    }}
}}
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, what: str) -> None:
    """Return once something accepts connections on ``127.0.0.1:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{what} did not accept connections on 127.0.0.1:{port} within {timeout:g} s")


class Nginx:
    """``with Nginx(workdir) as ngx: ngx.port`` runs nginx for the duration of the block."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise BenchError("nginx is not installed; the reference needs it: "
                             "apt-get install nginx-light")
        if not ECHO_MODULE.is_file():
            raise BenchError(f"nginx's echo module ({ECHO_MODULE}) is not installed; the "
                             "large-input reference needs it: apt-get install "
                             "libnginx-mod-http-echo")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        body_read = REFERENCE_BODY.replace("6.6", "$request_length")
        conf.write_text(_CONF.format(dir=self.workdir, port=self.port, body=REFERENCE_BODY,
                                     echo_module=ECHO_MODULE, body_prefix=BODY_PREFIX,
                                     body_read=body_read))
        self._proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(self.workdir)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port, 10.0, "nginx")
            self._check_reads_body()
        except BenchError:
            self.__exit__()
            raise
        return self

    def _check_reads_body(self, size: int = 300_000) -> None:
        """Under :data:`BODY_PREFIX`, nginx must have read the whole body before answering."""
        resp = requests.post(f"http://127.0.0.1:{self.port}{BODY_PREFIX}/check", data=b"x" * size,
                             timeout=10)
        read = json.loads(resp.text).get("output", 0) if resp.status_code == 200 else 0
        if read < size:
            raise BenchError(f"nginx under {BODY_PREFIX}/ answered {resp.status_code} "
                             f"{resp.text[:200]!r} to a {size}-byte body: it did not read it")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
