"""The embedded default backend: the server and every replica are local processes.

No Docker, no Redis. ``LocalContainerManager`` keeps a cluster in a directory::

    <cluster_dir>/cluster.json          ClusterConfig of the server process
    <cluster_dir>/secrets.json          management token and replica secret (mode 0600)
    <cluster_dir>/state.db              SQLite state store (unless redis_ip is given)
    <cluster_dir>/server.pid            pid of the server process
    <cluster_dir>/logs/server.log       its log
    <cluster_dir>/logs/replica-<model>-<version>-<n>.log   one log per replica
    <cluster_dir>/models/<model>/<version>/                the model's bundle (its "image")
    <cluster_dir>/models/<model>/<version>/.venv/          venv when pkgs_to_install is given
    <cluster_dir>/replicas/<model>/<version>/<n>.json|.pid one supervisor per replica

Every replica is a small detached supervisor (``python -m clipper_core.backends.local
supervise SPEC``) that runs ``python -m clipper_core.runtime`` and restarts it with exponential
backoff when it dies. Supervisors and the server run in their own sessions, so they outlive the
Python process that started them. A replica dies with its supervisor (``PR_SET_PDEATHSIG``), and
stopping a replica also kills what is left of its supervisor's process group, so no replica
serves unseen after its supervisor was killed.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from functools import partial
from pathlib import Path
from typing import Any

import attrs
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from clipper_core.backends.api import (
    REPLICA_LOG_TAIL,
    ClusterAdapter,
    ContainerManager,
    ReplicaState,
)
from clipper_core.config import (
    SECRETS_FILE,
    ClusterConfig,
    clipper_home,
    load_secrets,
    write_atomic,
)
from clipper_core.exceptions import BackendError, ClipperError
from clipper_core.hookspecs import hookimpl
from clipper_core.types import InputType

logger = logging.getLogger("clipper")

SERVER_MARKER = "clipper_core.server"
SUPERVISOR_MARKER = "clipper_core.backends.local"
#: Seconds the server gets to start listening before start_clipper gives up.
SERVER_START_TIMEOUT_S = 60.0
#: Seconds a process gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0
#: Restart backoff of a dead replica: 0.5 s, 1 s, 2 s... capped here.
MAX_BACKOFF_S = 8.0
#: A replica that ran this long before dying restarts without delay accumulated before.
HEALTHY_RUN_S = 10.0


#: File in a model venv's site-packages that adds the runtime's site directories.
RUNTIME_PTH = "clipper-runtime.pth"


def runtime_distributions() -> list[str]:
    """What a replica imports: clipper-core, the installed clipper plugins, and their
    requirements, recursively (from their metadata, markers evaluated here)."""
    plugins = {ep.dist.name for ep in importlib.metadata.entry_points(group="clipper")
               if ep.dist is not None}
    todo, found = ["clipper-core", *sorted(plugins)], {}
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an unmet requirement: the replica's import error will name it
        found[name] = dist
        for line in dist.requires or ():
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(found)


def runtime_site_dirs() -> list[Path]:
    """The site directories this interpreter loads :func:`runtime_distributions` from, in
    ``sys.path`` order: exactly what a model venv must see of the cluster's environment."""
    dirs = {Path(importlib.metadata.distribution(name).locate_file("")).resolve()
            for name in runtime_distributions()}
    order = {Path(entry).resolve(): i for i, entry in reversed(list(enumerate(sys.path)))}
    return sorted(dirs, key=lambda d: (order.get(d, len(order)), str(d)))


def process_alive(pid: int, marker: str) -> bool:
    """True if ``pid`` runs and is not a zombie and its command line contains ``marker``."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():  # not Linux: trust kill(0)
        return True
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and marker in cmdline


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _exited(pid: int) -> bool:
    """True once ``pid`` has fully exited (gone or a zombie: its files and sockets are closed).

    Stricter than :func:`process_alive`, whose command-line check fails as soon as an exiting
    process has released its memory, before its sockets are closed.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return Path("/proc").is_dir()  # the process vanished meanwhile
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _exited(pid):
            return True
        time.sleep(0.05)
    return _exited(pid)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_orphaned_group(pgid: int) -> None:
    """SIGKILL what is left of the process group of ``pgid``, a session leader that exited.

    Linux does not reuse a pid while a process group still carries it, so a group named by a
    free pid can only be the dead leader's leftovers."""
    try:
        os.kill(pgid, 0)
        return  # the pid runs: the leader itself (stopped by stop_process) or a reused pid
    except ProcessLookupError:
        pass
    except PermissionError:
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(pid: int, marker: str, graceful: bool = True,
                 timeout: float = STOP_TIMEOUT_S) -> None:
    """Stop a process (and its process group): SIGTERM then, after ``timeout`` s, SIGKILL; or
    SIGKILL at once."""
    if not process_alive(pid, marker):
        return
    if graceful:
        _signal_group(pid, signal.SIGTERM)
        if _wait_dead(pid, timeout):
            return
    _signal_group(pid, signal.SIGKILL)
    _wait_dead(pid, STOP_TIMEOUT_S)


def port_in_use(port: int, host: str = "0.0.0.0") -> bool:
    """True if ``host:port`` cannot be bound (SO_REUSEADDR, as the servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _spawn_detached(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session with stdout/stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )


class LocalContainerManager(ContainerManager):
    """Runs a Clipper cluster as local processes (the embedded default)."""

    name = "local"

    def __init__(
        self,
        cluster_name: str = "default-cluster",
        clipper_query_port: int = 1337,
        clipper_management_port: int = 1338,
        clipper_rpc_port: int = 7000,
        redis_ip: str | None = None,
        redis_port: int = 6379,
        cluster_dir: str | os.PathLike[str] | None = None,
        management_host: str = "127.0.0.1",
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
    ) -> None:
        """``management_host`` off loopback needs the token start_clipper generates; with
        ``tls_cert_file`` and ``tls_key_file`` both frontends speak HTTPS only."""
        self.cluster_name = cluster_name
        self.clipper_query_port = clipper_query_port
        self.clipper_management_port = clipper_management_port
        self.clipper_rpc_port = clipper_rpc_port
        self.redis_ip = redis_ip
        self.redis_port = redis_port
        self.cluster_dir = Path(cluster_dir) if cluster_dir else clipper_home() / cluster_name
        self.cluster_dir = self.cluster_dir.absolute()
        self.management_host = management_host
        self.tls_cert_file = tls_cert_file
        self.tls_key_file = tls_key_file
        self.management_token: str | None = None
        self.logger = ClusterAdapter(logger, {"cluster_name": cluster_name})

    # -- paths --------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.cluster_dir / "cluster.json"

    @property
    def secrets_path(self) -> Path:
        return self.cluster_dir / SECRETS_FILE

    @property
    def tls_ca_file(self) -> str | None:
        """The certificate clients verify the frontends with (None: plain HTTP)."""
        return self.tls_cert_file

    @property
    def rpc_socket(self) -> str:
        """The server's Unix socket for replicas, in the abstract namespace: named after the
        RPC port, which no other cluster on this host holds."""
        return f"@clipper-rpc-{self.clipper_rpc_port}"

    @property
    def server_pidfile(self) -> Path:
        return self.cluster_dir / "server.pid"

    @property
    def logs_dir(self) -> Path:
        return self.cluster_dir / "logs"

    @property
    def server_log(self) -> Path:
        return self.logs_dir / "server.log"

    def _replica_dir(self, name: str, version: str) -> Path:
        return self.cluster_dir / "replicas" / name / version

    def _replica_log(self, name: str, version: str, index: int) -> Path:
        return self.logs_dir / f"replica-{name}-{version}-{index}.log"

    # -- server -------------------------------------------------------------------------
    def server_pid(self) -> int | None:
        """The pid of this cluster's running server process, or None."""
        pid = _read_pid(self.server_pidfile)
        if pid is not None and process_alive(pid, SERVER_MARKER):
            return pid
        return None

    def _config(self, cache_size: int, request_timeout_s: float) -> ClusterConfig:
        if self.redis_ip:
            store_url = f"redis://{self.redis_ip}:{self.redis_port}/0"
        else:
            store_url = "sqlite:///" + str(self.cluster_dir / "state.db")
        return ClusterConfig(
            cluster_name=self.cluster_name,
            query_port=self.clipper_query_port,
            management_port=self.clipper_management_port,
            rpc_port=self.clipper_rpc_port,
            rpc_socket=self.rpc_socket,
            store_url=store_url,
            cache_size=cache_size,
            request_timeout_s=request_timeout_s,
            management_host=self.management_host,
            tls_cert_file=self.tls_cert_file,
            tls_key_file=self.tls_key_file,
            secrets_file=str(self.secrets_path),
        )

    def start_clipper(
        self,
        query_frontend_image: str = "",
        mgmt_frontend_image: str = "",
        frontend_exporter_image: str = "",
        cache_size: int = 33554432,
        qf_http_thread_pool_size: int = 1,
        qf_http_timeout_request: int = 5,
        qf_http_timeout_content: int = 300,
        num_frontend_replicas: int = 1,
    ) -> None:
        """Write ``cluster.json`` and start the server; the images are ignored (no Docker)."""
        if num_frontend_replicas != 1:
            msg = (f"LocalContainerManager runs exactly one query frontend, got "
                   f"num_frontend_replicas={num_frontend_replicas}. Use 1, or the Docker or "
                   "Kubernetes backend to scale frontends out")
            raise BackendError(msg)
        pid = self.server_pid()
        if pid is not None:
            msg = (f"Cluster {self.cluster_name} cannot be started because it is already running "
                   f"(server pid {pid}, cluster dir {self.cluster_dir}). Use "
                   "ClipperConnection.connect() to connect to it, or stop it first with "
                   "stop_all() / `clipper stop`")
            raise BackendError(msg)
        self._check_ports()
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        if self.config_path.exists():
            self.logger.info("Resuming cluster from its saved state in %s", self.cluster_dir)
        load_secrets(self.secrets_path, create=True)
        config = self._config(cache_size, float(qf_http_timeout_request))
        config.write(self.config_path)
        config = config.with_secrets()
        self.logger.info("Starting Clipper server process (query port %d, management port %d, "
                         "RPC port %d, store %s)", config.query_port, config.management_port,
                         config.rpc_port, config.store_url)
        self._start_server(config)
        self._restore_replicas()

    def _wait_ports_free(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Give a server that just died time to release its ports."""
        ports = (self.clipper_query_port, self.clipper_management_port, self.clipper_rpc_port)
        deadline = time.monotonic() + timeout
        while any(port_in_use(p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _check_ports(self) -> None:
        ports = (("query", self.clipper_query_port, "clipper_query_port", "--query-port"),
                 ("management", self.clipper_management_port, "clipper_management_port",
                  "--management-port"),
                 ("RPC", self.clipper_rpc_port, "clipper_rpc_port", "--rpc-port"))
        for what, port, kwarg, option in ports:
            if port_in_use(port):
                msg = (f"Port {port} ({what} port of cluster {self.cluster_name}) is already in "
                       f"use. Stop the process that uses it, or choose another port: "
                       f"LocalContainerManager({kwarg}=...) or `clipper start {option} ...`")
                raise BackendError(msg)

    def _start_server(self, config: ClusterConfig) -> None:
        argv = [sys.executable, "-m", SERVER_MARKER, "--config", str(self.config_path)]
        proc = _spawn_detached(argv, self.server_log)
        pid = proc.pid
        write_atomic(self.server_pidfile, str(pid))
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                msg = (f"The server process of cluster {self.cluster_name} exited during start "
                       f"with code {proc.returncode}. Last lines of {self.server_log}:\n"
                       f"{self._tail(self.server_log)}")
                raise BackendError(msg)
            if (_port_open(config.management_port, self._admin_host())
                    and _port_open(config.query_port)):
                self.management_token = config.management_token
                self.logger.info("Server process running (pid %d, log %s)", pid, self.server_log)
                return
            time.sleep(0.1)
        msg = (f"The server process of cluster {self.cluster_name} did not open its ports within "
               f"{SERVER_START_TIMEOUT_S:g} s. See {self.server_log}")
        raise BackendError(msg)

    @staticmethod
    def _tail(path: Path, lines: int = 20) -> str:
        """The last ``lines`` lines of a log (read from its last 64 KiB)."""
        try:
            with path.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def connect(self) -> None:
        """Find the cluster from ``cluster.json``; restart its server process if it is dead."""
        if not self.config_path.is_file():
            msg = (f"No cluster named {self.cluster_name} in {self.cluster_dir}. Start one with "
                   "ClipperConnection.start_clipper() or `clipper start`")
            raise BackendError(msg)
        config = ClusterConfig.from_file(self.config_path)
        self.clipper_query_port = config.query_port
        self.clipper_management_port = config.management_port
        self.clipper_rpc_port = config.rpc_port
        if config.rpc_socket != self.rpc_socket:  # saved by a version without it
            config = attrs.evolve(config, rpc_socket=self.rpc_socket)
            config.write(self.config_path)
        self.management_host = config.management_host
        self.tls_cert_file, self.tls_key_file = config.tls_cert_file, config.tls_key_file
        self.management_token = config.management_token
        if self.server_pid() is None:
            self.logger.info("Server process of cluster %s is not running; restarting it from "
                             "its saved state", self.cluster_name)
            self._wait_ports_free()
            self._check_ports()
            self._start_server(config)
            self._restore_replicas()

    # -- addresses ----------------------------------------------------------------------
    def _admin_host(self) -> str:
        host = self.management_host
        return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host

    def get_admin_addr(self) -> str:
        return f"{self._admin_host()}:{self.clipper_management_port}"

    def get_query_addr(self) -> str:
        return f"127.0.0.1:{self.clipper_query_port}"

    # -- models -------------------------------------------------------------------------
    def default_base_image(self, deployer_name: str) -> str:
        return "default"

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str,
        container_registry: str | None = None,
        pkgs_to_install: list[str] | None = None,
    ) -> str:
        """Copy the bundle to ``models/<name>/<version>``; install packages into its venv."""
        source = Path(model_data_path)
        if not source.is_dir():
            msg = f"model_data_path {model_data_path!r} is not a directory"
            raise BackendError(msg)
        if base_image != "default":
            self.logger.warning("LocalContainerManager runs models with this Python (%s); base "
                                "image %s is ignored", sys.executable, base_image)
        target = self.cluster_dir / "models" / name / version
        self.logger.info("Building local model %s:%s with model data from %s", name, version,
                         model_data_path)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)
        if pkgs_to_install:
            self._install_packages(target / ".venv", list(pkgs_to_install))
        self.logger.info("Model %s:%s is in %s", name, version, target)
        return str(target)

    def _install_packages(self, venv: Path, packages: list[str]) -> None:
        """A venv that sees the runtime's site directories (never the base interpreter's
        site-packages, which ``--system-site-packages`` would expose), plus ``packages``."""
        self.logger.info("Creating virtual environment %s", venv)
        self._run_logged([sys.executable, "-m", "venv", str(venv)])
        site_packages = Path(sysconfig.get_path("purelib", "venv", {"base": str(venv),
                                                                    "platbase": str(venv)}))
        dirs = runtime_site_dirs()
        self.logger.info("The venv sees the runtime's distributions from %s",
                         ", ".join(map(str, dirs)))
        # site.addsitedir also runs the .pth files there (editable installs use them).
        (site_packages / RUNTIME_PTH).write_text("".join(
            f"import site; site.addsitedir({str(d)!r})\n" for d in dirs))
        self.logger.info("Installing %s", " ".join(packages))
        self._run_logged([str(venv / "bin" / "python"), "-m", "pip", "install",
                          "--progress-bar", "off", "--disable-pip-version-check", *packages])

    def _run_logged(self, argv: list[str]) -> None:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        output = []
        for line in proc.stdout:
            output.append(line.rstrip())
            self.logger.info("%s", line.rstrip())
        if proc.wait() != 0:
            tail = "\n".join(output[-15:])
            msg = f"Command {' '.join(argv)} failed with exit code {proc.returncode}:\n{tail}"
            raise BackendError(msg)

    def deploy_model(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1
    ) -> None:
        self.set_num_replicas(name, version, input_type, image, num_replicas)

    def _live_replicas(self, name: str, version: str) -> dict[int, int]:
        """``{replica index: supervisor pid}`` of the live supervisors of a model version."""
        live = {}
        directory = self._replica_dir(name, version)
        if directory.is_dir():
            for pidfile in directory.glob("*.pid"):
                pid = _read_pid(pidfile)
                if pid is not None and process_alive(pid, SUPERVISOR_MARKER):
                    live[int(pidfile.stem)] = pid
        return live

    def _recorded_replicas(self, name: str, version: str) -> dict[int, int]:
        """``{replica index: supervisor pid}`` of every pid file of a model version, live or not."""
        directory = self._replica_dir(name, version)
        pids = ((int(f.stem), _read_pid(f)) for f in directory.glob("*.pid")) \
            if directory.is_dir() else ()
        return {index: pid for index, pid in pids if pid is not None}

    def get_num_replicas(self, name: str, version: str) -> int:
        return len(self._live_replicas(name, str(version)))

    def replica_states(self, name: str, version: str) -> list[ReplicaState]:
        """A replica has failed when its runtime exited (``<n>.exited``, written by the
        supervisor) and has not loaded its model since (no ``<n>.ready``)."""
        version = str(version)
        directory = self._replica_dir(name, version)
        states = []
        for index, pid in sorted(self._live_replicas(name, version).items()):
            ready = (directory / f"{index}.ready").exists()
            try:
                code = (directory / f"{index}.exited").read_text().strip()
            except OSError:
                code = None
            failed = code is not None and not ready
            if failed:
                detail = f"exited with code {code}; its supervisor (pid {pid}) restarts it"
            else:
                detail = "serving" if ready else "starting"
            log = self._replica_log(name, version, index)
            states.append(ReplicaState(f"{name}:{version} replica {index} (log {log})", failed,
                                       detail, self._tail(log, REPLICA_LOG_TAIL)))
        return states

    def set_num_replicas(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int
    ) -> None:
        version = str(version)
        if num_replicas < 0:
            msg = f"num_replicas must be 0 or more, got {num_replicas}"
            raise BackendError(msg)
        live = self._live_replicas(name, version)
        for index, pid in self._recorded_replicas(name, version).items():
            if index not in live:  # its supervisor died: nothing of it may keep serving
                _kill_orphaned_group(pid)
        if len(live) < num_replicas:
            bundle = Path(image)
            if not bundle.is_dir():
                msg = (f"Image {image!r} of model {name}:{version} is not a local model directory. "
                       "LocalContainerManager runs bundles made by build_model (e.g. through "
                       "deploy_python_closure); Docker images need DockerContainerManager")
                raise BackendError(msg)
            self.logger.info("Found %d replicas for %s:%s. Adding %d", len(live), name, version,
                             num_replicas - len(live))
            free = (i for i in range(num_replicas * 2 + len(live)) if i not in live)
            for _ in range(num_replicas - len(live)):
                self._start_replica(name, version, InputType.parse(input_type), bundle, next(free))
        elif len(live) > num_replicas:
            extra = sorted(live)[num_replicas:]
            self.logger.info("Found %d replicas for %s:%s. Removing %d", len(live), name, version,
                             len(extra))
            for index in extra:
                self._stop_replica(name, version, index, live[index], graceful=True)

    def _start_replica(self, name: str, version: str, input_type: InputType, bundle: Path,
                       index: int) -> None:
        directory = self._replica_dir(name, version)
        directory.mkdir(parents=True, exist_ok=True)
        venv_python = bundle / ".venv" / "bin" / "python"
        spec = {
            "python": str(venv_python if venv_python.exists() else sys.executable),
            "log": str(self._replica_log(name, version, index)),
            "exit_file": str(directory / f"{index}.exited"),
            "secrets_file": str(self.secrets_path),
            "env": {
                "CLIPPER_MODEL_NAME": name,
                "CLIPPER_MODEL_VERSION": version,
                "CLIPPER_IP": "127.0.0.1",
                "CLIPPER_PORT": str(self.clipper_rpc_port),
                "CLIPPER_RPC_SOCKET": self.rpc_socket,
                "CLIPPER_INPUT_TYPE": input_type.canonical,
                "CLIPPER_MODEL_PATH": str(bundle),
                "CLIPPER_READY_FILE": str(directory / f"{index}.ready"),
            },
        }
        spec_path = directory / f"{index}.json"
        write_atomic(spec_path, json.dumps(spec, indent=2))
        self._spawn_supervisor(spec_path)

    @staticmethod
    def _spawn_supervisor(spec_path: Path) -> None:
        spec = json.loads(spec_path.read_text())
        argv = [sys.executable, "-m", SUPERVISOR_MARKER, "supervise", str(spec_path)]
        proc = _spawn_detached(argv, Path(spec["log"]))
        write_atomic(spec_path.with_suffix(".pid"), str(proc.pid))

    def _restore_replicas(self) -> None:
        """Restart the supervisors of replicas kept by ``stop_all(keep_state=True)``."""
        root = self.cluster_dir / "replicas"
        for spec_path in sorted(root.glob("*/*/*.json")) if root.is_dir() else ():
            pid = _read_pid(spec_path.with_suffix(".pid"))
            if pid is not None and process_alive(pid, SUPERVISOR_MARKER):
                continue
            spec = json.loads(spec_path.read_text())
            spec["env"]["CLIPPER_PORT"] = str(self.clipper_rpc_port)
            spec["env"]["CLIPPER_RPC_SOCKET"] = self.rpc_socket
            spec["secrets_file"] = str(self.secrets_path)
            write_atomic(spec_path, json.dumps(spec, indent=2))
            self.logger.info("Restarting replica %s of %s:%s", spec_path.stem,
                             spec_path.parent.parent.name, spec_path.parent.name)
            self._spawn_supervisor(spec_path)

    def _stop_replica(self, name: str, version: str, index: int, pid: int,
                      graceful: bool, keep_spec: bool = False) -> None:
        stop_process(pid, SUPERVISOR_MARKER, graceful)
        _kill_orphaned_group(pid)
        directory = self._replica_dir(name, version)
        removed = (".pid", ".ready", ".exited")
        for suffix in removed if keep_spec else (*removed, ".json"):
            (directory / f"{index}{suffix}").unlink(missing_ok=True)

    def replica_processes(self) -> list[dict[str, Any]]:
        """Every supervised replica: model, version, index, supervisor pid and whether it lives."""
        rows = []
        root = self.cluster_dir / "replicas"
        for pidfile in sorted(root.glob("*/*/*.pid")) if root.is_dir() else ():
            pid = _read_pid(pidfile)
            rows.append({
                "model_name": pidfile.parent.parent.name,
                "model_version": pidfile.parent.name,
                "index": int(pidfile.stem),
                "pid": pid,
                "alive": pid is not None and process_alive(pid, SUPERVISOR_MARKER),
                "log": str(self._replica_log(pidfile.parent.parent.name, pidfile.parent.name,
                                             int(pidfile.stem))),
            })
        return rows

    # -- logs and stopping --------------------------------------------------------------
    def get_logs(self, logging_dir: str) -> list[str]:
        target = Path(logging_dir)
        target.mkdir(parents=True, exist_ok=True)
        paths = []
        for log in sorted(self.logs_dir.glob("*.log")) if self.logs_dir.is_dir() else ():
            dest = target / f"{self.cluster_name}-{log.name}"
            shutil.copyfile(log, dest)
            paths.append(str(dest))
        return paths

    def stop_models(self, models: dict[str, list[str]], graceful: bool = True) -> None:
        for name, versions in models.items():
            for version in versions:
                version = str(version)
                for index, pid in self._recorded_replicas(name, version).items():
                    self._stop_replica(name, version, index, pid, graceful)
                shutil.rmtree(self._replica_dir(name, version), ignore_errors=True)

    def _all_model_versions(self) -> dict[str, list[str]]:
        root = self.cluster_dir / "replicas"
        models: dict[str, list[str]] = {}
        if root.is_dir():
            for directory in sorted(root.glob("*/*")):
                models.setdefault(directory.parent.name, []).append(directory.name)
        return models

    def stop_all_model_containers(self, graceful: bool = True) -> None:
        self.stop_models(self._all_model_versions(), graceful)

    def stop_all(self, graceful: bool = True, keep_state: bool = False) -> None:
        """Stop every replica and the server; unless ``keep_state``, delete the cluster's state.

        With ``keep_state=True`` a later ``start_clipper()`` or ``connect()`` resumes the
        cluster with its applications, models, links and replicas. Logs are always kept in
        ``<cluster_dir>/logs``.
        """
        if keep_state:
            for name, versions in self._all_model_versions().items():
                for version in versions:
                    for index, pid in self._recorded_replicas(name, version).items():
                        self._stop_replica(name, version, index, pid, graceful, keep_spec=True)
        else:
            self.stop_all_model_containers(graceful)
        pid = _read_pid(self.server_pidfile)
        if pid is not None:
            # The server first answers its requests in flight (its drain_timeout_s).
            try:
                drain = ClusterConfig.from_file(self.config_path).drain_timeout_s
            except (OSError, ValueError, ClipperError):
                drain = ClusterConfig().drain_timeout_s
            stop_process(pid, SERVER_MARKER, graceful, timeout=drain + STOP_TIMEOUT_S)
        self.server_pidfile.unlink(missing_ok=True)
        if not keep_state:
            for name in ("state.db", "state.db-wal", "state.db-shm", "cluster.json",
                         SECRETS_FILE):
                (self.cluster_dir / name).unlink(missing_ok=True)
            for name in ("models", "replicas"):
                shutil.rmtree(self.cluster_dir / name, ignore_errors=True)
        self.logger.info("Stopped all Clipper cluster and all model containers")


@hookimpl
def clipper_register_backends() -> list[type[ContainerManager]]:
    return [LocalContainerManager]


# -- the replica supervisor (runs detached, one per replica) --------------------------------

PR_SET_PDEATHSIG = 1
#: Looked up before any fork (the child only calls it); None where there is no prctl.
_prctl = getattr(ctypes.CDLL(None), "prctl", None)


def die_with_parent(parent: int) -> None:
    """In a forked child before exec: get SIGKILL when ``parent`` dies, even if it already did."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


class _Supervisor:
    """Keeps one ``python -m clipper_core.runtime`` alive, restarting it with backoff."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None

    def say(self, log_file: Any, message: str) -> None:
        stamp = time.strftime("%y-%m-%d:%H:%M:%S")
        log_file.write(f"{stamp} SUPERVISOR [pid {os.getpid()}] {message}\n".encode())
        log_file.flush()

    def on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        env = {**os.environ, **self.spec["env"], "PYTHONUNBUFFERED": "1"}
        if self.spec.get("secrets_file"):
            secret = load_secrets(self.spec["secrets_file"]).get("replica_secret")
            if secret:
                env["CLIPPER_REPLICA_SECRET"] = secret
        argv = [self.spec["python"], "-m", "clipper_core.runtime"]
        exit_file = Path(self.spec["exit_file"]) if "exit_file" in self.spec else None
        ready_file = Path(self.spec["env"]["CLIPPER_READY_FILE"])
        if exit_file is not None:
            exit_file.unlink(missing_ok=True)
        failures = 0
        with open(self.spec["log"], "ab") as log_file:
            while not self.stopping:
                self.say(log_file, f"starting replica: {' '.join(argv)}")
                started = time.monotonic()
                self.child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                              stdout=log_file, stderr=subprocess.STDOUT,
                                              preexec_fn=partial(die_with_parent,
                                                                 os.getpid()))
                code = self._wait_child()
                if self.stopping:
                    break
                # Until the next start has loaded its model, the replica counts as failed.
                ready_file.unlink(missing_ok=True)
                if exit_file is not None:
                    exit_file.write_text(f"{code}\n")
                failures = 0 if time.monotonic() - started >= HEALTHY_RUN_S else failures + 1
                delay = min(MAX_BACKOFF_S, 0.5 * 2 ** max(failures - 1, 0))
                self.say(log_file, f"replica exited with code {code}; restarting in {delay:g} s")
                deadline = time.monotonic() + delay
                while not self.stopping and time.monotonic() < deadline:
                    time.sleep(0.05)
            self._stop_child()
            self.say(log_file, "stopped")
        return 0

    def _wait_child(self) -> int | None:
        assert self.child is not None
        while True:
            try:
                return self.child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if self.stopping:
                    return None

    def _stop_child(self) -> None:
        if self.child is None or self.child.poll() is not None:
            return
        self.child.terminate()
        try:
            self.child.wait(timeout=STOP_TIMEOUT_S / 2)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "supervise":
        print("usage: python -m clipper_core.backends.local supervise SPEC.json", file=sys.stderr)
        return 2
    return _Supervisor(json.loads(Path(args[1]).read_text())).run()


if __name__ == "__main__":
    sys.exit(main())
