"""Every test session of the project: lint, core tests, Docker tests, each plugin, benchmarks.

``nox`` runs the default sessions (everything ``scripts/test-all.sh`` needs); ``nox -s bench``
runs the benchmarks. Each plugin is tested alone in a fresh environment with clipper-core, so
its declared dependencies are proven sufficient.
"""

from __future__ import annotations

import re
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests", "browser", "docker", "plugins", "mxnet", "k8s", "r"]

ROOT = Path(__file__).parent
#: Plugins tested by the ``plugins`` session, with what each needs installed first.
PLUGIN_PREREQUISITES = {
    "clipper-deployer-pytorch": ["torch==2.13.0"],
    "clipper-deployer-onnx": ["torch==2.13.0"],
    "clipper-deployer-tensorflow": [],
    "clipper-deployer-pyspark": [],
}
#: MXNet 1.9.1 (the last release) needs numpy<1.24, so it gets its own environment.
MXNET_PREREQUISITES = ["numpy<1.24", "mxnet==1.9.1"]
PYTEST = ["pytest", "-q", "-p", "no:cacheprovider", "--durations=10"]


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """Ruff over the whole tree."""
    session.run("ruff", "check", ".")


@nox.session
def tests(session: nox.Session) -> None:
    """Core unit and integration tests on the embedded default (no Docker)."""
    session.install("-e", ".[test]")
    session.run(*PYTEST, "tests", "bench/tests", "-m", "not docker and not browser",
                *session.posargs)


@nox.session
def browser(session: nox.Session) -> None:
    """The dashboard in Debian's headless chromium (installed with apt if missing).

    ``CLIPPER_SCREENSHOT_DIR=docs/images nox -s browser`` refreshes the docs' screenshots.
    """
    session.run("bash", "scripts/install-system-deps.sh", "chromium", external=True)
    session.install("-e", ".[test]", "playwright")
    session.run(*PYTEST, "tests", "-m", "browser", *session.posargs)


@nox.session
def docker(session: nox.Session) -> None:
    """Docker backend tests on a real engine (scripts/ensure-docker.sh starts it)."""
    session.run("bash", "scripts/ensure-docker.sh", external=True)
    session.run("bash", "scripts/build-base-image.sh", external=True)
    session.install("-e", ".[test]")
    session.run(*PYTEST, "tests", "-m", "docker", *session.posargs)


@nox.session
def k8s(session: nox.Session) -> None:
    """The Kubernetes backend on the local cluster of scripts/kube-local.sh (its first build
    compiles Kubernetes, ~5 min of CPU; the binaries are cached in ~/.cache/clipper-kube)."""
    session.run("bash", "scripts/ensure-docker.sh", external=True)
    session.run("bash", "scripts/build-base-image.sh", external=True)
    session.run("bash", "scripts/kube-local.sh", "build", external=True)
    session.run("bash", "scripts/install-system-deps.sh", "docker-registry", external=True)
    session.install("-e", ".[test]", "-e", "plugins/clipper-backend-k8s[test]")
    session.run(*PYTEST, "plugins/clipper-backend-k8s/tests", *session.posargs)


@nox.session
@nox.parametrize("plugin", list(PLUGIN_PREREQUISITES))
def plugins(session: nox.Session, plugin: str) -> None:
    """One framework plugin, installed alone with clipper-core."""
    if PLUGIN_PREREQUISITES[plugin]:
        session.install(*PLUGIN_PREREQUISITES[plugin])
    session.install("-e", ".[test]", "-e", f"plugins/{plugin}[test]")
    session.run(*PYTEST, f"plugins/{plugin}/tests", *session.posargs)


@nox.session
def mxnet(session: nox.Session) -> None:
    """The MXNet plugin in its own environment (numpy<1.24)."""
    session.install(*MXNET_PREREQUISITES)
    session.install("-e", ".[test]", "-e", "plugins/clipper-deployer-mxnet[test]",
                    *MXNET_PREREQUISITES)
    session.run(*PYTEST, "plugins/clipper-deployer-mxnet/tests", *session.posargs)


@nox.session
def r(session: nox.Session) -> None:
    """R: installs R from Debian, runs ``R CMD check`` of rclipper/ (no warning allowed) and the
    R deployer plugin's tests (embedded default and Docker)."""
    session.run("bash", "scripts/install-r.sh", external=True)
    session.run("bash", "scripts/ensure-docker.sh", external=True)
    session.run("bash", "scripts/build-base-image.sh", external=True)
    session.install("-e", ".[test]", "-e", "plugins/clipper-deployer-r[test]")
    check_dir = Path(session.create_tmp()) / "rcheck"
    check_dir.mkdir(exist_ok=True)
    with session.chdir(check_dir):
        session.run("R", "CMD", "build", str(ROOT / "rclipper"), external=True)
        version = re.search(r"^Version: (\S+)", (ROOT / "rclipper" / "DESCRIPTION").read_text(),
                            re.M)[1]
        session.run("R", "CMD", "check", "--no-manual", f"Rclipper_{version}.tar.gz",
                    external=True)
    status = (check_dir / "Rclipper.Rcheck" / "00check.log").read_text().splitlines()[-1]
    if "WARNING" in status or "ERROR" in status:
        session.error(f"R CMD check: {status}; see {check_dir}/Rclipper.Rcheck/00check.log")
    session.run(*PYTEST, "plugins/clipper-deployer-r/tests", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Throughput and latency against nginx (``-- --quick`` for the short run)."""
    session.install("torch==2.13.0")
    session.install("-e", ".", "-r", "bench/requirements.txt")
    session.run("python", "-m", "bench", *session.posargs)
