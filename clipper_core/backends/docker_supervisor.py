"""Brings back a Docker cluster's containers that die (``docker kill``, a crash, the OOM killer).

Docker's restart policies do not restart a container stopped by ``docker kill``, so every
cluster started by :class:`~clipper_core.backends.docker.DockerContainerManager` runs this
loop in a small container (``supervisor-<id>``, the server image, with the Docker socket
mounted)::

    python -m clipper_core.backends.docker_supervisor --cluster <name>

Every ``--interval`` seconds it starts again each exited container labelled with the
cluster. Containers the manager stops on purpose are removed (their status is ``removing``,
then they are gone), so they are never brought back. A container that keeps dying is
restarted with a growing delay (up to 30 s). A query frontend that comes back with another IP
address (its old one was taken meanwhile) gets the cluster's replicas restarted, since a replica
resolves ``CLIPPER_IP`` once, when it starts.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from clipper_core.backends.api import (
    CLIPPER_DOCKER_LABEL,
    CLIPPER_MODEL_CONTAINER_LABEL,
    CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL,
    CLIPPER_QUERY_FRONTEND_ID_LABEL,
)

log = logging.getLogger("clipper.docker.supervisor")

#: Role label of the supervisor's own container.
CLIPPER_SUPERVISOR_LABEL = "ai.clipper.supervisor.label"
MAX_BACKOFF_S = 30.0
#: A container that stayed up this long is considered healthy again (backoff resets).
HEALTHY_AFTER_S = 60.0


class Supervisor:
    """Restarts the exited containers of one cluster, with a per-container backoff."""

    def __init__(self, client: Any, cluster_name: str) -> None:
        self.client = client
        self.cluster_name = cluster_name
        #: container id -> (time of the last restart, current delay)
        self._backoff: dict[str, tuple[float, float]] = {}
        #: query frontend container id -> its addresses when last seen running
        self._frontend_ips: dict[str, tuple[str, ...]] = {}

    def sweep(self, now: float | None = None) -> list[str]:
        """Start every exited container of the cluster that is due; return their names."""
        import docker.errors

        now = time.monotonic() if now is None else now
        exited = self.client.containers.list(
            ignore_removed=True, all=True, filters={**self._cluster_filter(), "status": ["exited"]})
        started = []
        for container in exited:
            if CLIPPER_SUPERVISOR_LABEL in container.labels:
                continue
            last, delay = self._backoff.get(container.id, (-HEALTHY_AFTER_S * 2, 0.0))
            if now - last > HEALTHY_AFTER_S:
                delay = 0.0
            if now - last < delay:
                continue
            try:
                container.start()
            except docker.errors.APIError as exc:  # removed meanwhile, or cannot start
                log.warning("Could not restart %s: %s", container.name, exc)
                continue
            log.info("Restarted %s (it had exited)", container.name)
            self._backoff[container.id] = (now, min(max(delay * 2, 1.0), MAX_BACKOFF_S))
            started.append(container.name)
        self._check_frontend_addresses()
        return started

    def _cluster_filter(self, *labels: str) -> dict[str, list[str]]:
        return {"label": [f"{CLIPPER_DOCKER_LABEL}={self.cluster_name}", *labels]}

    def _check_frontend_addresses(self) -> None:
        """Restart a query frontend's replicas when it runs at another address than before."""
        import docker.errors

        for frontend in self.client.containers.list(
                ignore_removed=True,
                filters=self._cluster_filter(CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL)):
            previous = self._frontend_ips.get(frontend.id)
            self._frontend_ips[frontend.id] = _addresses(frontend)
            if previous is None or previous == _addresses(frontend):
                continue
            log.info("Query frontend %s moved from %s to %s; restarting its replicas",
                     frontend.name, previous, _addresses(frontend))
            frontend_id = frontend.labels.get(CLIPPER_QUERY_FRONTEND_ID_LABEL, "0")
            for replica in self.client.containers.list(
                    ignore_removed=True,
                    filters=self._cluster_filter(CLIPPER_MODEL_CONTAINER_LABEL)):
                if replica.labels.get(CLIPPER_QUERY_FRONTEND_ID_LABEL, "0") != frontend_id:
                    continue
                try:
                    replica.restart(timeout=2)
                except docker.errors.APIError as exc:
                    log.warning("Could not restart %s: %s", replica.name, exc)

    def run(self, interval: float) -> None:
        log.info("Supervising the containers of cluster %s", self.cluster_name)
        while True:
            try:
                self.sweep()
            except Exception:  # the engine restarting must not end supervision
                log.exception("Supervision sweep failed; retrying")
            time.sleep(interval)


def _addresses(container: Any) -> tuple[str, ...]:
    networks = container.attrs["NetworkSettings"]["Networks"] or {}
    return tuple(sorted(n["IPAddress"] for n in networks.values()))


def main(argv: list[str] | None = None) -> int:
    import docker

    parser = argparse.ArgumentParser(prog="python -m clipper_core.backends.docker_supervisor",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", required=True, help="cluster name (container label)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between sweeps")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)-8s [%(name)s] %(message)s")
    Supervisor(docker.from_env(), args.cluster).run(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
