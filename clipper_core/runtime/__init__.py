"""The model container runtime: ``python -m clipper_core.runtime``, the process every replica runs.

It reads the environment (:class:`RuntimeConfig`), loads the model bundle once through the
deployer that wrote it, and serves batches to the query frontend over RPC version 4
(:class:`ModelRuntime`). Exit codes: 0 after SIGTERM/SIGINT, 1 for a bad environment, 2 when the
bundle cannot be loaded, 3 when loading it fails with an ImportError.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from clipper_core.deployers.api import Bundle, Deployer, Predictor
from clipper_core.exceptions import ClipperError
from clipper_core.plugins import deployers, get_plugin_manager
from clipper_core.runtime.codec import PredictionError, decode_inputs, encode_outputs
from clipper_core.runtime.config import RuntimeConfig, RuntimeConfigError
from clipper_core.runtime.server import ModelRuntime

__all__ = [
    "BundleLoadError",
    "ModelRuntime",
    "PredictionError",
    "RuntimeConfig",
    "RuntimeConfigError",
    "decode_inputs",
    "encode_outputs",
    "load_predictor",
    "main",
]

EXIT_CONFIG = 1
EXIT_LOAD = 2
EXIT_IMPORT = 3

log = logging.getLogger("clipper_core.runtime")


class BundleLoadError(ClipperError):
    """The model bundle could not be turned into a predict callable."""

    def __init__(self, msg: str, exit_code: int) -> None:
        super().__init__(msg)
        self.exit_code = exit_code


def load_predictor(path: str | os.PathLike[str]) -> tuple[Bundle, Predictor]:
    """Read the bundle at ``path`` and load it with its deployer, once."""
    try:
        bundle = Bundle.read(path)
    except Exception as exc:
        raise BundleLoadError(f"Could not read the model bundle {path}: {exc}", EXIT_LOAD) from exc
    try:
        predict = _deployer_class(bundle.deployer)().load(bundle)
    except ImportError as exc:
        msg = (f"Could not load the model bundle {path} with the {bundle.deployer!r} deployer: "
               f"{type(exc).__name__}: {exc}. Install the missing package in the replica's "
               "environment (pkgs_to_install at deploy time)")
        raise BundleLoadError(msg, EXIT_IMPORT) from exc
    except Exception as exc:
        msg = (f"Could not load the model bundle {path} with the {bundle.deployer!r} deployer: "
               f"{type(exc).__name__}: {exc}")
        raise BundleLoadError(msg, EXIT_LOAD) from exc
    if not callable(predict):
        msg = (f"The {bundle.deployer!r} deployer loaded {path} as a "
               f"{type(predict).__name__}, not a callable")
        raise BundleLoadError(msg, EXIT_LOAD)
    return bundle, predict


def _deployer_class(name: str) -> type[Deployer]:
    """The deployer ``name``; installed plugins are imported only if it is not built in."""
    builtin = deployers(get_plugin_manager(load_entrypoints=False))
    if name in builtin.classes:
        return builtin.get(name)
    return deployers().get(name)


def main(environ: Mapping[str, str] | None = None) -> int:
    """Run a replica until SIGTERM/SIGINT; return the process exit code."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO,
        format="%(asctime)s.%(msecs)03d %(levelname)s clipper-runtime: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    try:
        config = RuntimeConfig.from_env(environ)
    except RuntimeConfigError as exc:
        print(exc, file=sys.stderr, flush=True)
        return EXIT_CONFIG
    command = _replica_command(config.model_path)
    if command is not None:
        return _run_replica_command(*command)
    try:
        bundle, predict = load_predictor(config.model_path)
    except BundleLoadError as exc:
        log.error("%s", exc)
        return exc.exit_code
    input_type = config.input_type or bundle.input_type
    if input_type is not bundle.input_type:
        log.warning("CLIPPER_INPUT_TYPE=%s overrides the bundle's input type %s",
                    input_type.canonical, bundle.input_type.canonical)
    log.info("Serving model %s version %s: %s inputs, bundle %s (deployer %s), frontend %s",
             config.model_name, config.model_version, input_type.canonical, bundle.path,
             bundle.deployer, config.address)
    ready_file = _write_ready_file(config)
    try:
        ModelRuntime(config, predict, input_type).serve()
    finally:
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
    log.info("Stopped")
    return 0


def _replica_command(path: str | os.PathLike[str]) -> tuple[list[str], dict[str, str]] | None:
    """The bundle's own replica process (another language), if its deployer has one."""
    try:
        bundle = Bundle.read(path)
        return _deployer_class(bundle.deployer)().replica_command(bundle)
    except Exception:  # load_predictor reports what is wrong with the bundle
        return None


def _run_replica_command(argv: list[str], extra_env: dict[str, str]) -> int:
    """Run the bundle's replica process until it exits; SIGTERM reaches it as SIGINT.

    Such runtimes (Rscript) may die on SIGTERM without cleanup but can catch SIGINT, which
    lets them say goodbye to the frontend.
    """
    log.info("Serving the bundle with %s", " ".join(argv))
    child = subprocess.Popen(argv, env={**os.environ, **extra_env}, stdin=subprocess.DEVNULL)

    def forward(signum: int, frame: object) -> None:
        child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    log.info("The replica process exited with code %d", code)
    return code if code >= 0 else 128 - code


def _write_ready_file(config: RuntimeConfig) -> Path | None:
    """Write ``READY`` for health checks; a file that cannot be written is skipped silently."""
    if config.ready_file is None:
        return None
    try:
        config.ready_file.write_text("READY")
    except OSError:
        return None
    return config.ready_file
