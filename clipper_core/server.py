"""The Clipper server process: the frontends of :attr:`ClusterConfig.roles` in one event loop.

Run ``python -m clipper_core.server --config cluster.json`` (what the local backend does) or
``python -m clipper_core.server --from-env`` (``CLIPPER_*`` variables, what containers do).
The process opens the state store named by ``store_url``, starts the management frontend
and/or the query frontend (with its RPC listener), logs to stderr and stops cleanly on SIGTERM
or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvloop

from clipper_core.config import ClusterConfig, redact_url
from clipper_core.exceptions import ClipperError

if TYPE_CHECKING:
    from clipper_core.frontend.management import Scaler

log = logging.getLogger("clipper.server")

LOG_FORMAT = "%(asctime)s %(levelname)-8s [%(name)s] %(message)s"
LOG_DATEFMT = "%y-%m-%d:%H:%M:%S"


async def serve(config: ClusterConfig, stop: asyncio.Event,
                scale: Scaler | None = None) -> None:
    """Run the configured frontends until ``stop`` is set, then shut them down in order.

    ``scale`` lets the management API start and stop replicas (its ``set_num_replicas`` route).
    """
    from clipper_core.store import open_store

    store = open_store(config.store_url)
    frontends: list[Any] = []
    try:
        if "management" in config.roles:
            from clipper_core.frontend.management import ManagementFrontend

            frontends.append(ManagementFrontend(config, store, scale))
        if "query" in config.roles:
            from clipper_core.frontend.query import QueryFrontend

            frontends.append(QueryFrontend(config, store))
        for frontend in frontends:
            await frontend.start()
        _log_ready(config, frontends)
        await stop.wait()
        log.info("Stopping cluster %s", config.cluster_name)
    finally:
        for frontend in reversed(frontends):
            try:
                await frontend.stop()
            except Exception:
                log.exception("Error while stopping %s", type(frontend).__name__)
        store.close()
    log.info("Stopped")


def _log_ready(config: ClusterConfig, frontends: list[Any]) -> None:
    parts = []
    for frontend in frontends:
        kind = type(frontend).__name__
        if kind == "QueryFrontend":
            parts.append(f"query on {config.bind_host}:{frontend.port}, "
                         f"RPC on {config.bind_host}:{frontend.rpc_port}")
        else:
            parts.append(f"management on {config.management_host}:{frontend.port}")
    log.info("Cluster %s serving: %s (store %s)", config.cluster_name, "; ".join(parts),
             redact_url(config.store_url))


def local_scaler(config: ClusterConfig, cluster_dir: Path) -> Scaler:
    """The embedded default's replica scaling, for the server process of ``cluster_dir``."""
    from clipper_core.backends.local import LocalContainerManager

    manager = LocalContainerManager(
        cluster_name=config.cluster_name, clipper_query_port=config.query_port,
        clipper_management_port=config.management_port, clipper_rpc_port=config.rpc_port,
        cluster_dir=cluster_dir)
    return manager.set_num_replicas


async def _main(config: ClusterConfig, scale: Scaler | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(config, stop, scale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clipper_core.server",
        description="Run a Clipper server process (query and/or management frontend).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", metavar="FILE", help="cluster.json written by a backend")
    source.add_argument("--from-env", action="store_true",
                        help="read the configuration from CLIPPER_* environment variables")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format=LOG_FORMAT,
                        datefmt=LOG_DATEFMT)
    try:
        config = ClusterConfig.from_env() if args.from_env else ClusterConfig.from_file(args.config)
    except (OSError, ValueError, ClipperError) as exc:
        log.error("Cannot read the configuration: %s", exc)
        return 2
    # --config is the local backend's cluster.json: this process may run the cluster's replicas.
    scale = None if args.from_env else local_scaler(config, Path(args.config).absolute().parent)
    try:
        uvloop.run(_main(config, scale))
    except (OSError, ClipperError) as exc:
        log.error("Cluster %s cannot start: %s", config.cluster_name, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
