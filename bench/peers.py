"""``python -m bench --peers``: ``feature_sum`` on Clipper's peers, in the same run as Clipper's
``sum`` and nginx.

Each peer is installed from PyPI into its own venv under :func:`cache_dir` (created once, kept;
a venv whose requirement changed is installed again) and serves the model from a script of
:mod:`bench.peer_servers` on the benchmark's SUT core, where it is measured with the same wrk
settings as ``sum``, interleaved with nginx. A peer that cannot be installed or started here
gives a record with the error (and its log's tail) instead of figures.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import requests

from bench import BenchError
from bench.reference import free_port
from bench.runner import Measured, Runner, records
from bench.workloads import BODY_TEMPLATE, N_DIGITS, Scenario

log = logging.getLogger("bench")
SERVERS = Path(__file__).resolve().parent / "peer_servers"

#: Triton's own route and body (KServe v2 JSON) for the same 10 doubles.
TRITON_TEMPLATE = ('{"inputs":[{"name":"input","shape":[1,10],"datatype":"FP64",'
                   '"data":[{n}.5,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]}]}')


@attrs.frozen
class Peer:
    """One peer: what to install, how to start it, where and what to POST."""

    name: str
    venv: str  # its directory under cache_dir(); peers with the same requirement share it
    requirement: str
    #: The command in the venv, ``{port}``, ``{python}``, ``{dir}`` (a scratch directory) filled in.
    command: tuple[str, ...]
    path: str = "/sum/predict"
    body: str = BODY_TEMPLATE


PEERS = (
    Peer("ray-serve", "ray", "ray[serve]==2.60.0",
         ("{python}", str(SERVERS / "ray_serve.py"), "{port}", "plain", "{dir}")),
    Peer("ray-serve-batch", "ray", "ray[serve]==2.60.0",
         ("{python}", str(SERVERS / "ray_serve.py"), "{port}", "batch", "{dir}")),
    Peer("bentoml", "bentoml", "bentoml==1.4.40",
         ("{bin}/bentoml", "serve", "bentoml_service:FeatureSum", "--host", "127.0.0.1",
          "--port", "{port}", "--working-dir", str(SERVERS))),
    Peer("litserve", "litserve", "litserve==0.2.19",
         ("{python}", str(SERVERS / "litserve_server.py"), "{port}")),
    Peer("triton", "pytriton", "nvidia-pytriton==0.7.0",
         ("{python}", str(SERVERS / "pytriton_server.py"), "{port}"),
         path="/v2/models/sum/infer", body=TRITON_TEMPLATE),
)


def cache_dir() -> Path:
    """Where the peers' venvs live: ``$CLIPPER_BENCH_CACHE`` or ``~/.cache/clipper-bench``."""
    root = os.environ.get("CLIPPER_BENCH_CACHE") or Path.home() / ".cache" / "clipper-bench"
    return Path(root) / "peers"


def ensure_venv(peer: Peer) -> Path:
    """The venv holding the peer's requirement, created and installed the first time."""
    venv, requirement = cache_dir() / peer.venv, peer.requirement
    marker = venv / "clipper-bench-requirement.txt"
    if marker.is_file() and marker.read_text() == requirement:
        return venv
    log.info("peers: installing %s into %s (once; a few minutes)", requirement, venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    for cmd in ([sys.executable, "-m", "venv", str(venv)],
                [str(venv / "bin" / "pip"), "install", "-q", requirement]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-1500:]}")
    marker.write_text(requirement)
    return venv


def version_of(venv: Path, requirement: str) -> str:
    """The installed version of ``requirement``'s distribution in ``venv``."""
    dist = requirement.split("[")[0].split("=")[0]
    proc = subprocess.run([str(venv / "bin" / "python"), "-c",
                           f"import importlib.metadata as m; print(m.version({dist!r}))"],
                          capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() or proc.stderr.strip()[-300:]


class PeerServer:
    """``with PeerServer(peer, venv, workdir) as s: s.port`` runs the peer for the block."""

    def __init__(self, peer: Peer, venv: Path, workdir: Path) -> None:
        self.peer, self.venv, self.workdir = peer, venv, workdir
        self.port = free_port()
        self.log_path = workdir / f"{peer.name}.log"
        #: A short path of its own (Ray puts AF_UNIX sockets, at most 107 bytes, under it);
        #: processes naming it are the peer's, even those that left its process group.
        self.scratch = Path(tempfile.mkdtemp(prefix="cbp-"))
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PeerServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        python = self.venv / "bin" / "python"
        fill = {"python": str(python), "bin": str(self.venv / "bin"), "port": str(self.port),
                "dir": str(self.scratch)}
        cmd = [part.format(**fill) for part in self.peer.command]
        libdir = subprocess.run([str(python), "-c", "import sysconfig; "
                                 "print(sysconfig.get_config_var('LIBDIR'))"],
                                capture_output=True, text=True, timeout=60).stdout.strip()
        # Triton's Python stub links libpython: the venv's own, not another one on the system
        env = {**os.environ, "LD_LIBRARY_PATH": libdir}
        with self.log_path.open("wb") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                          cwd=SERVERS, start_new_session=True)
        try:
            self._wait_ready(timeout=300.0)
        except BenchError:
            self.__exit__()
            raise
        return self

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self, timeout: float, warm: int = 100) -> None:
        """Return after ``warm`` answers in a row (some peers are slow for their first ones)."""
        url = f"http://127.0.0.1:{self.port}{self.peer.path}"
        body = self.peer.body.replace("{n}", "1" * N_DIGITS)
        deadline = time.monotonic() + timeout
        last, answered = "no answer", 0
        session = requests.Session()
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BenchError(f"{self.peer.name} exited with {self._proc.returncode}; "
                                 f"its log ends:\n{self.log_tail()}")
            try:
                resp = session.post(url, data=body, timeout=5,
                                    headers={"Content-Type": "application/json"})
                if resp.status_code == 200 and "output" in resp.text:
                    answered += 1
                    if answered == warm:
                        return
                    continue
                last = f"{resp.status_code} {resp.text[:200]}"
            except requests.RequestException as exc:
                last = str(exc)[:200]
            answered = 0
            time.sleep(0.5)
        raise BenchError(f"{self.peer.name} did not answer within {timeout:g} s (last: {last}); "
                         f"its log ends:\n{self.log_tail()}")

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        _kill_leftovers(str(self.scratch))
        shutil.rmtree(self.scratch, ignore_errors=True)


def _kill_leftovers(marker: str) -> None:
    """Processes a peer started that left its process group (e.g. Ray's) and name ``marker``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmd:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _start(peer: Peer, venv: Path, workdir: Path) -> PeerServer:
    """The running peer, started a second time if its first start fails (Ray's raylet must
    register within a fixed 30 s, which a busy machine can miss)."""
    try:
        return PeerServer(peer, venv, workdir / "first").__enter__()
    except BenchError as exc:
        log.warning("peers: %s did not start (%s); trying again", peer.name,
                    str(exc).splitlines()[0])
    return PeerServer(peer, venv, workdir / "second").__enter__()


def measure_peers(runner: Runner, nginx_port: int, workdir: Path, ours: Measured
                  ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Records of every peer against nginx, and each peer's version (or why it did not run).

    ``ours`` is Clipper's ``sum`` measured in the same run; each peer's records also carry the
    ratios of Clipper to the peer (``clipper_ratio_qps``, ``clipper_ratio_p50``).
    """
    recs: list[dict[str, Any]] = []
    versions: dict[str, str] = {}
    for peer in PEERS:
        scenario = Scenario(f"peer-{peer.name}", "sum", body=peer.body, path=peer.path)
        try:
            venv = ensure_venv(peer)
            versions[peer.name] = version_of(venv, peer.requirement)
            server = _start(peer, venv, workdir / peer.name)
            try:
                log.info("peers: %s up on port %d", peer.name, server.port)
                theirs, ref = runner.measure(server.port, scenario, nginx_port)
            finally:
                server.__exit__()
        except BenchError as exc:
            log.error("peers: %s cannot run here: %s", peer.name, exc)
            recs.append({"scenario": f"peer-{peer.name}", "error": str(exc)})
            continue
        assert ref is not None
        peer_recs = records(scenario, theirs, ref, runner.settings.fractions,
                            runner.settings.layout())
        for rec, mine in ((peer_recs[0], ours.saturation), (peer_recs[1], ours.c1)):
            rec["clipper_ratio_qps"] = mine.qps / rec["qps"] if rec["qps"] else None
            rec["clipper_ratio_p50"] = mine.p50_ms / rec["p50_ms"] if rec["p50_ms"] else None
        recs += peer_recs
    return recs, versions
