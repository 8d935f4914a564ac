"""The system under test: an embedded cluster (``LocalContainerManager``) with the workloads."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import requests

from bench import BenchError
from bench.reference import free_port
from bench.workloads import BODY_TEMPLATE, N_DIGITS, Deployment

log = logging.getLogger("bench")


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) process ``pid`` has spent, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def replica_pids(model: str) -> list[int]:
    """The pids of ``model``'s replica processes (the runtime, not its supervisor)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"clipper_core.runtime" in cmd and f"CLIPPER_MODEL_NAME={model}".encode() in env:
            pids.append(int(entry.name))
    if not pids:
        raise BenchError(f"no replica process of {model} found")
    return sorted(pids)


class Cluster:
    """``with Cluster(dir) as c: c.deploy(d)`` starts an embedded cluster and stops it after."""

    def __init__(self, workdir: Path, cache_size: int = 33554432,
                 env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.cache_size = cache_size
        #: Environment variables of the server process (e.g. ``CLIPPER_TRACING_ENDPOINT``).
        self.env = env or {}
        self.query_port = free_port()
        self.conn = None
        self.manager = None

    def __enter__(self) -> Cluster:
        from clipper_admin import ClipperConnection, LocalContainerManager

        manager = LocalContainerManager(
            cluster_name=f"bench-{os.getpid()}", clipper_query_port=self.query_port,
            clipper_management_port=free_port(), clipper_rpc_port=free_port(),
            cluster_dir=self.workdir)
        self.manager = manager
        self.conn = ClipperConnection(manager)
        saved = {name: os.environ.get(name) for name in self.env}
        os.environ.update(self.env)  # the server process (and its config) inherit them
        try:
            self.conn.start_clipper(cache_size=self.cache_size)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name)
                else:
                    os.environ[name] = value
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.stop_all()
            self.conn = None

    def server_pid(self) -> int | None:
        return self.manager.server_pid() if self.manager is not None else None

    def deploy(self, dep: Deployment) -> None:
        """Register ``dep.app``, deploy its function as model ``<app>-model`` and link them."""
        from clipper_admin.deployers.python import deploy_python_closure

        model = f"{dep.app}-model"
        self.conn.register_application(dep.app, dep.input_type, "-1.0", dep.slo_micros)
        deploy_python_closure(self.conn, name=model, version=1, input_type=dep.input_type,
                              func=dep.func, batch_size=dep.batch_size)
        self.conn.link_model_to_app(dep.app, model)

    def wait_ready(self, app: str, template: str = BODY_TEMPLATE, timeout: float = 120.0) -> None:
        """Return once ``app`` answers ``template`` with a prediction, not the default output."""
        url = f"http://127.0.0.1:{self.query_port}/{app}/predict"
        body = template.replace("{n}", "1" * N_DIGITS)
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                resp = requests.post(url, data=body, timeout=5,
                                     headers={"Content-Type": "application/json"})
                last = f"{resp.status_code} {resp.text[:300]}"
                if resp.status_code == 200 and resp.json().get("default") is False:
                    return
            except requests.RequestException as exc:
                last = str(exc)
            time.sleep(0.2)
        raise BenchError(f"application {app} gave no model prediction within {timeout:g} s "
                         f"(last answer: {last}); see the logs in {self.workdir / 'logs'}")
