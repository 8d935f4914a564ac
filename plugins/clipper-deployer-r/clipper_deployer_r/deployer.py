"""The R deployer: bundles of R functions saved by ``Rclipper::save_model``, served by Rscript.

An R bundle is a model bundle whose ``func.rds`` is the saved R model (the function, the
globals it captured, the packages it needs)::

    bundle.json   {"deployer": "r", "input_type": "doubles", "extra": {"r_packages": [...],
                   "r_version": "4.2.2", "rclipper": "0.5.0", "input_class": "numeric"}}
    func.rds      Rclipper::save_model's file

The replica of an R bundle is ``Rscript -e "Rclipper::serve_from_env()"``: the model runtime
starts it instead of loading the bundle in Python (:meth:`RDeployer.replica_command`). The
Rclipper package it runs is the copy shipped inside this plugin (the checkout's ``rclipper/``),
installed once per version into an R library (:func:`rclipper_library`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from clipper_core.backends.docker_images import cache_dir
from clipper_core.deployers.api import Bundle, Deployer, Predictor
from clipper_core.exceptions import DeployError
from clipper_core.types import InputType

MODEL_FILE = "func.rds"
#: Debian packages an R replica needs (no CRAN: everything comes from Debian).
R_APT_PACKAGES = ("r-base-core", "r-cran-pbdzmq", "r-cran-jsonlite", "r-cran-codetools",
                  "r-cran-curl")
#: Where the Rclipper package is installed; default ``<cache>/R/<source digest>``.
LIBRARY_ENV = "CLIPPER_R_LIBRARY"
_INSTALL_TIMEOUT_S = 300
#: Both arrive in R as numeric vectors, so a model saved for one serves the other.
_R_NUMERIC = {InputType.DOUBLES, InputType.FLOATS}


def rscript() -> str:
    """The ``Rscript`` on PATH, or an error saying how to install R."""
    found = shutil.which("Rscript")
    if found is None:
        msg = ("Rscript is not on PATH. Install R from Debian: apt-get install "
               + " ".join(R_APT_PACKAGES))
        raise DeployError(msg)
    return found


def rclipper_source() -> Path:
    """The Rclipper package source shipped with this plugin."""
    return Path(str(resources.files("clipper_deployer_r") / "rclipper"))


def _source_digest(source: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def rclipper_library() -> Path:
    """An R library holding this plugin's Rclipper, installed now if it is not there yet.

    The library is keyed by the digest of the package source, so an updated plugin installs
    its own copy; installing into a temporary directory and renaming it makes concurrent
    replica starts safe.
    """
    source = rclipper_source()
    if os.environ.get(LIBRARY_ENV):
        library = Path(os.environ[LIBRARY_ENV])
    else:
        library = cache_dir() / "R" / _source_digest(source)
    if (library / "Rclipper" / "DESCRIPTION").is_file():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".rclipper-", dir=library.parent))
    try:
        r = str(Path(rscript()).with_name("R"))
        proc = subprocess.run([r, "CMD", "INSTALL", "--no-test-load", "-l", str(tmp),
                               str(source)], capture_output=True, text=True,
                              timeout=_INSTALL_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            msg = (f"Installing the Rclipper R package from {source} failed:\n{tail}\n"
                   "Install the R packages it needs: apt-get install " + " ".join(R_APT_PACKAGES))
            raise DeployError(msg)
        try:
            tmp.rename(library)
        except OSError:  # another process installed it meanwhile
            if not (library / "Rclipper" / "DESCRIPTION").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return library


def run_r(code: str, *args: str, timeout: float = 120) -> str:
    """Run R ``code`` (with ``commandArgs(TRUE)`` = ``args``) using this plugin's Rclipper."""
    env = {**os.environ, "R_LIBS": str(rclipper_library())}
    proc = subprocess.run([rscript(), "--vanilla", "-e", code, *args], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.strip().splitlines()[-10:]
        raise DeployError("\n".join(msg) or f"Rscript exited with code {proc.returncode}")
    return proc.stdout


_DESCRIBE = ("d <- Rclipper:::describe_model(Rclipper:::read_model(commandArgs(TRUE)[1])); "
             "cat(jsonlite::toJSON(d, auto_unbox = TRUE, null = 'null'))")


def describe_r_model(rds_path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``Rclipper::save_model`` recorded in ``rds_path`` (input type, packages...)."""
    path = Path(rds_path)
    if not path.is_file():
        msg = (f"r_model {str(path)!r} is not a file. Pass the path of an .rds file written in "
               "R by Rclipper::save_model(func, sample_input, path)")
        raise DeployError(msg)
    try:
        out = run_r(_DESCRIBE, str(path))
    except DeployError as exc:
        msg = (f"{str(path)!r} is not a model saved by Rclipper::save_model: {exc}. Save the "
               "function in R with Rclipper::save_model(func, sample_input, path)")
        raise DeployError(msg) from None
    return json.loads(out)


def write_r_bundle(bundle_dir: Path, rds_path: str | os.PathLike[str],
                   input_type: str | None = None) -> Bundle:
    """Copy an R model into ``bundle_dir`` as a bundle; the input type defaults to the model's."""
    description = describe_r_model(rds_path)
    recorded = InputType.parse(description["input_type"])
    itype = InputType.parse(input_type) if input_type is not None else recorded
    if itype is not recorded and {itype, recorded} != _R_NUMERIC:
        msg = (f"The R model was saved for {recorded.canonical} inputs (its sample input), but "
               f"input_type={input_type!r} was given. Pass input_type={recorded.canonical!r} "
               "or save the model with a sample input of the other type")
        raise DeployError(msg)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(rds_path, bundle_dir / MODEL_FILE)
    bundle = Bundle(path=bundle_dir, deployer=RDeployer.name, input_type=itype, python="",
                    extra={"r_packages": description.get("packages", []),
                           "r_version": description.get("r_version"),
                           "rclipper": description.get("rclipper"),
                           "input_class": description.get("input_class")})
    bundle.write()
    return bundle


class RDeployer(Deployer):
    """R functions: the replica is Rscript running the Rclipper replica on ``func.rds``."""

    name = "r"
    image_apt_packages = R_APT_PACKAGES
    image_commands = ("python -m clipper_deployer_r install-rclipper",)

    def describe_call(self) -> str:
        return "func(inputs) in R, saved by Rclipper::save_model"

    def save(self, bundle_dir: Path, model: Any) -> dict[str, Any]:
        return write_r_bundle(bundle_dir, model).extra

    def load(self, bundle: Bundle) -> Predictor:
        msg = (f"The R bundle {bundle.path} is served by Rscript, not loaded into Python: run it "
               "with python -m clipper_core.runtime, which starts its replica_command")
        raise DeployError(msg)

    def replica_command(self, bundle: Bundle) -> tuple[list[str], dict[str, str]]:
        return ([rscript(), "--vanilla", "-e", "Rclipper::serve_from_env()"],
                {"R_LIBS": str(rclipper_library())})
