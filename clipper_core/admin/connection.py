"""``ClipperConnection``: the seeds' Python API for starting and managing a Clipper cluster.

Management calls are HTTP requests to the management API (spec §2) at
``container_manager.get_admin_addr()``; everything that starts or stops processes is delegated
to the container manager (:class:`~clipper_core.backends.api.ContainerManager`).
"""

from __future__ import annotations

import base64
import io
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import cloudpickle
import numpy as np
import requests

from clipper_core.backends.api import ClusterAdapter, ContainerManager
from clipper_core.config import DEFAULT_CACHE_SIZE
from clipper_core.deployers.api import load_pickle
from clipper_core.exceptions import ClipperException, UnconnectedException
from clipper_core.types import (
    ADAPTIVE_BATCH_SIZE,
    CONTAINERLESS_MODEL_IMAGE,
    InputType,
    validate_dns1123,
)

DEFAULT_PREDICTION_CACHE_SIZE_BYTES = DEFAULT_CACHE_SIZE
#: Environment variable holding the management API token, if the cluster requires one.
TOKEN_ENV = "CLIPPER_MANAGEMENT_TOKEN"
#: Registry (repository prefix) of the images the original's scripts name; ``clipper_admin.
#: __registry__``. The project builds its images as ``clipper/...`` (``clipper images build``).
CLIPPER_REGISTRY = os.environ.get("CLIPPER_REGISTRY", "clipper")
#: Scratch directory of the original's test scripts (``clipper_admin.CLIPPER_TEMP_DIR``).
CLIPPER_TEMP_DIR = "/tmp/clipper"
_IMAGE_TAG = "develop"
#: Health check of start_clipper: tries x seconds (as Clipper: 300 x 1 s).
HEALTH_CHECK_TRIES = 300
HEALTH_CHECK_INTERVAL_S = 1.0
REQUEST_TIMEOUT_S = 60.0
#: Seconds deploy_model waits for its replicas to connect (``replica_start_timeout_s``).
REPLICA_START_TIMEOUT_S = 300.0
#: Seconds between two progress lines while waiting for replicas.
PROGRESS_INTERVAL_S = 5.0

logger = logging.getLogger("clipper")


def http_url(cm: ContainerManager, addr: str, path: str = "") -> str:
    """``http(s)://addr/path``: HTTPS when the cluster's frontends use TLS."""
    return f"{'https' if cm.tls_ca_file else 'http'}://{addr}{path}"


def _configure_logging() -> None:
    """Print the "clipper" logger's INFO lines like the seeds show them, unless configured."""
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)-8s [%(filename)s:%(lineno)d] %(message)s",
        datefmt="%y-%m-%d:%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


_configure_logging()


class ClipperConnection:
    """Starts, connects to and manages one Clipper cluster through its container manager."""

    def __init__(self, container_manager: ContainerManager,
                 replica_start_timeout_s: float = REPLICA_START_TIMEOUT_S) -> None:
        self.connected = False
        self.cm = container_manager
        #: How long deploy_model and set_num_replicas wait for new replicas to connect.
        self.replica_start_timeout_s = replica_start_timeout_s
        self.logger = ClusterAdapter(logger, {"cluster_name": self.cm.cluster_name})
        self._session = requests.Session()

    # -- cluster lifecycle --------------------------------------------------------------
    def start_clipper(
        self,
        query_frontend_image: str = f"{CLIPPER_REGISTRY}/query_frontend:{_IMAGE_TAG}",
        mgmt_frontend_image: str = f"{CLIPPER_REGISTRY}/management_frontend:{_IMAGE_TAG}",
        frontend_exporter_image: str = f"{CLIPPER_REGISTRY}/frontend-exporter:{_IMAGE_TAG}",
        cache_size: int = DEFAULT_PREDICTION_CACHE_SIZE_BYTES,
        qf_http_thread_pool_size: int = 1,
        qf_http_timeout_request: int = 5,
        qf_http_timeout_content: int = 300,
        num_frontend_replicas: int = 1,
    ) -> None:
        """Start a new cluster with the container manager, wait until it is healthy, connect."""
        self.cm.start_clipper(
            query_frontend_image, mgmt_frontend_image, frontend_exporter_image, cache_size,
            qf_http_thread_pool_size, qf_http_timeout_request, qf_http_timeout_content,
            num_frontend_replicas,
        )
        self._wait_healthy()
        self.connected = True
        self.logger.info("Clipper is running")

    def _wait_healthy(self) -> None:
        checks = (self._url(self.cm.get_query_addr(), "/metrics"),
                  self._url(self.cm.get_admin_addr(), "/admin/ping"))
        for attempt in range(HEALTH_CHECK_TRIES):
            try:
                if all(self._session.get(url, timeout=5, headers=self._auth(),
                                         verify=self._verify()).status_code == 200
                       for url in checks):
                    return
            except requests.RequestException:
                pass
            if attempt % 5 == 4:
                self.logger.info("Clipper still initializing.")
            time.sleep(HEALTH_CHECK_INTERVAL_S if attempt else 0.1)
        msg = (f"Clipper did not become healthy within {HEALTH_CHECK_TRIES} tries: "
               f"{' and '.join(checks)} must answer 200. Inspect get_clipper_logs()")
        raise ClipperException(msg)

    def connect(self) -> None:
        """Connect to a running Clipper cluster."""
        self.cm.connect()
        self.connected = True
        self.logger.info("Successfully connected to Clipper cluster at %s",
                         self.cm.get_query_addr())

    def _require_connected(self) -> None:
        if not self.connected:
            raise UnconnectedException()

    def _auth(self) -> dict[str, str]:
        token = self.cm.management_token or os.environ.get(TOKEN_ENV)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _url(self, addr: str, path: str) -> str:
        return http_url(self.cm, addr, path)

    def _verify(self) -> str | bool:
        return self.cm.tls_ca_file or True

    def _post(self, route: str, body: dict[str, Any]) -> requests.Response:
        self._require_connected()
        url = self._url(self.cm.get_admin_addr(), f"/admin/{route}")
        headers = {"Content-type": "application/json", **self._auth()}
        try:
            r = self._session.post(url, json=body, headers=headers, timeout=REQUEST_TIMEOUT_S,
                                   verify=self._verify())
        except requests.ConnectionError as exc:
            msg = (f"Cannot reach the management API at {url}: {exc}. Is the cluster running? "
                   "Start it with start_clipper() or `clipper start`")
            raise ClipperException(msg) from None
        if r.status_code != requests.codes.ok:
            msg = f"Received error status code: {r.status_code} and message: {r.text}"
            self.logger.error(msg)
            raise ClipperException(msg)
        return r

    # -- applications -------------------------------------------------------------------
    def register_application(self, name: str, input_type: str, default_output: str,
                             slo_micros: int, selection_policy: str = "default",
                             selection_params: dict[str, Any] | None = None) -> None:
        """Register an application; ``selection_policy`` and ``selection_params`` (optional,
        new) give it a policy at once, as :meth:`set_selection_policy` would."""
        self._post("add_app", {"name": name, "input_type": input_type,
                               "default_output": default_output,
                               "latency_slo_micros": slo_micros})
        self.logger.info("Application %s was successfully registered", name)
        if selection_policy != "default" or selection_params:
            self.set_selection_policy(name, selection_policy, **(selection_params or {}))

    def unregister_application(self, name: str) -> None:
        self._post("delete_app", {"name": name})
        self.logger.info("Application %s was successfully unregistered", name)

    def delete_application(self, name: str) -> None:
        """Deprecated alias of :meth:`unregister_application`."""
        self.logger.warning("delete_application is deprecated: use unregister_application")
        self.unregister_application(name)

    def link_model_to_app(self, app_name: str, model_name: str) -> None:
        self._post("add_model_links", {"app_name": app_name, "model_names": [model_name]})
        self.logger.info("Model %s is now linked to application %s", model_name, app_name)

    def unlink_model_from_app(self, app_name: str, model_name: str) -> None:
        self._post("delete_model_links", {"app_name": app_name, "model_names": [model_name]})
        self.logger.info("Model %s is now removed to application %s", model_name, app_name)

    def get_all_apps(self, verbose: bool = False) -> list[Any]:
        return self._post("get_all_applications", {"verbose": verbose}).json()

    def get_app_info(self, name: str) -> dict[str, Any] | None:
        info = self._post("get_application", {"name": name}).json()
        if not info:
            self.logger.warning("Application %s is not registered with Clipper", name)
            return None
        return info

    def get_linked_models(self, app_name: str) -> list[str]:
        return self._post("get_linked_models", {"app_name": app_name}).json()

    def set_selection_policy(self, app_name: str, policy: str, **params: Any) -> None:
        """Choose how ``app_name`` picks and combines its linked models (``docs/selection.md``):
        ``policy`` is ``default``, ``exp3``, ``exp4``, ``epsilon_greedy``, ``ucb1``,
        ``thompson``, ``ensemble`` or a plugin's; ``params`` are the policy's parameters plus
        ``per_user``, ``versions_in_body`` and ``seed``. What the old policy learned is dropped.
        """
        self._post("set_selection_policy",
                   {"app_name": app_name, "policy": policy, "params": params})
        self.logger.info("Application %s now selects models with policy %s", app_name, policy)

    def get_selection_state(self, app_name: str, uid: int = 0) -> dict[str, Any]:
        """``app_name``'s policy, its parameters and what it learned (for user ``uid`` with
        ``per_user``): ``{"policy", "params", "learned": {"version": n, "state": {...}}}``;
        ``learned`` is {} before any feedback was stored."""
        return self._post("get_selection_state", {"app_name": app_name, "uid": uid}).json()

    # -- traffic between versions (docs/selection.md) -------------------------------------
    def set_traffic_split(self, model_name: str, weights: dict[str, float]) -> None:
        """Split ``model_name``'s queries between versions by weight, e.g. ``{"1": 95,
        "2": 5}`` (a canary); weights are numbers >= 0 with a positive sum."""
        self._post("set_traffic_split", {"model_name": model_name, "weights": weights})
        self.logger.info("Model %s now splits its traffic %s", model_name, weights)

    def set_shadow_versions(self, model_name: str, versions: list[str]) -> None:
        """Mirror ``model_name``'s queries to ``versions`` (their answers are compared in the
        metrics, never returned); ``[]`` stops mirroring."""
        self._post("set_shadow_versions", {"model_name": model_name, "versions": versions})
        self.logger.info("Model %s now mirrors its traffic to %s", model_name, versions)

    def promote_canary(self, model_name: str) -> None:
        """Make the canary version of ``model_name`` current with all of its traffic."""
        self.logger.info(self._post("promote_canary", {"model_name": model_name}).text)

    def rollback(self, model_name: str) -> None:
        """Return all of ``model_name``'s traffic to the version current before the split,
        shadows or promotion, and remove them."""
        self.logger.info(self._post("rollback", {"model_name": model_name}).text)

    def get_traffic(self, model_name: str) -> dict[str, Any]:
        """``{"current", "split", "shadows", "previous"}`` of ``model_name``."""
        return self._post("get_traffic", {"model_name": model_name}).json()

    # -- models -------------------------------------------------------------------------
    def build_and_deploy_model(
        self,
        name: str,
        version: Any,
        input_type: str,
        model_data_path: str,
        base_image: str,
        labels: list[str] | None = None,
        container_registry: str | None = None,
        num_replicas: int = 1,
        batch_size: int = ADAPTIVE_BATCH_SIZE,
        pkgs_to_install: list[str] | None = None,
    ) -> None:
        self._require_connected()
        image = self.build_model(name, version, model_data_path, base_image, container_registry,
                                 pkgs_to_install)
        self.deploy_model(name, version, input_type, image, labels, num_replicas, batch_size)

    def build_model(
        self,
        name: str,
        version: Any,
        model_data_path: str,
        base_image: str,
        container_registry: str | None = None,
        pkgs_to_install: list[str] | None = None,
    ) -> str:
        """Package ``model_data_path`` with the container manager; works unconnected."""
        version = str(version)
        _validate_versioned_model_name(name, version)
        if pkgs_to_install is not None and not all(isinstance(p, str) for p in pkgs_to_install):
            msg = f"pkgs_to_install must be a list of strings, got {pkgs_to_install!r}"
            raise ClipperException(msg)
        return self.cm.build_model(name, version, model_data_path, base_image,
                                   container_registry, pkgs_to_install)

    def deploy_model(
        self,
        name: str,
        version: Any,
        input_type: str,
        image: str,
        labels: list[str] | None = None,
        num_replicas: int = 1,
        batch_size: int = ADAPTIVE_BATCH_SIZE,
    ) -> None:
        """Start ``num_replicas`` replicas of ``image``, register the model version (it becomes
        current) and wait until the replicas have connected.

        A replica that exits before it serves (an import error, a missing package, a bad
        bundle) or replicas that do not connect within ``replica_start_timeout_s`` fail the
        deploy with their log lines: the replicas are stopped, the version is unregistered
        and the previous version is current again.
        """
        self._require_connected()
        version = str(version)
        _validate_versioned_model_name(name, version)
        previous = self._current_version_or_none(name)
        self.cm.deploy_model(name, version, input_type, image, num_replicas)
        self.register_model(name, version, input_type, image, labels, batch_size)
        try:
            self._wait_for_replicas(name, version, num_replicas)
        except ClipperException:
            self._undo_deploy(name, version, previous)
            raise
        self.logger.info("Done deploying model %s:%s.", name, version)

    def _current_version_or_none(self, name: str) -> str | None:
        for model in self.get_all_models(verbose=True):
            if model["model_name"] == name and model["is_current_version"]:
                return model["model_version"]
        return None

    def _connected_replicas(self, name: str, version: str) -> int:
        return sum(1 for r in self.get_all_model_replicas(verbose=True)
                   if r["model_name"] == name and r["model_version"] == version)

    def _wait_for_replicas(self, name: str, version: str, count: int) -> None:
        """Return once ``count`` replicas of ``name:version`` are connected; raise with the
        replicas' log lines if one of them fails or the timeout passes."""
        timeout = self.replica_start_timeout_s
        started = time.monotonic()
        next_progress = started + PROGRESS_INTERVAL_S
        while (connected := self._connected_replicas(name, version)) < count:
            states = self.cm.replica_states(name, version)
            failed = [s for s in states if s.failed]
            elapsed = time.monotonic() - started
            if failed or elapsed > timeout:
                why = ("a replica exited before it served" if failed else
                       f"{connected} of {count} replicas connected within {timeout:g} s "
                       "(replica_start_timeout_s)")
                msg = (f"Model {name}:{version} did not start: {why}.\n"
                       + "".join(f"{s.replica}: {s.detail}. Last lines of its log:\n"
                                 f"{s.log_tail}\n" for s in failed or states)
                       + "Fix the cause shown above (an import error, a package missing from "
                         "pkgs_to_install, a bad bundle) and deploy again")
                raise ClipperException(msg)
            if time.monotonic() >= next_progress:
                next_progress += PROGRESS_INTERVAL_S
                self.logger.info("Waiting for replicas of %s:%s to connect: %d of %d after "
                                 "%.0f s (timeout %g s)", name, version, connected, count,
                                 elapsed, timeout)
            time.sleep(0.25)

    def _undo_deploy(self, name: str, version: str, previous: str | None) -> None:
        """Stop the replicas of a failed deploy and unregister it; ``previous`` is current."""
        self.cm.stop_models({name: [version]})
        self._unregister_versioned_models({name: [version]})
        if previous is not None:
            self._post("set_model_version", {"model_name": name, "model_version": previous})
        self.logger.error("Deploying model %s:%s failed; its replicas were stopped and the "
                          "version unregistered%s", name, version,
                          f" (version {previous} is current)" if previous else "")

    def register_model(
        self,
        name: str,
        version: Any,
        input_type: str,
        image: str | None = None,
        labels: list[str] | None = None,
        batch_size: int = ADAPTIVE_BATCH_SIZE,
    ) -> None:
        version = str(version)
        self._post("add_model", {
            "model_name": name,
            "model_version": version,
            "labels": labels or [],
            "input_type": input_type,
            "container_name": image or CONTAINERLESS_MODEL_IMAGE,
            "model_data_path": "DEPRECATED",
            "batch_size": batch_size,
        })
        self.logger.info("Successfully registered model %s:%s", name, version)

    def get_current_model_version(self, name: str) -> str:
        for model in self.get_all_models(verbose=True):
            if model["model_name"] == name and model["is_current_version"]:
                return model["model_version"]
        msg = f"No versions of model {name} registered with Clipper"
        raise ClipperException(msg)

    def get_num_replicas(self, name: str, version: Any = None) -> int:
        self._require_connected()
        version = self.get_current_model_version(name) if version is None else str(version)
        return self.cm.get_num_replicas(name, version)

    def set_num_replicas(self, name: str, num_replicas: int, version: Any = None) -> None:
        self._require_connected()
        version = self.get_current_model_version(name) if version is None else str(version)
        info = self.get_model_info(name, version)
        if info is None:
            msg = f"Cannot add container for non-registered model {name}:{version}"
            raise ClipperException(msg)
        if info["container_name"] == CONTAINERLESS_MODEL_IMAGE:
            msg = f"Cannot resize the replica set for containerless model {name}:{version}"
            raise ClipperException(msg)
        self.cm.set_num_replicas(name, version, info["input_type"], info["container_name"],
                                 num_replicas)
        self._wait_for_replicas(name, version, num_replicas)

    def get_all_models(self, verbose: bool = False) -> list[Any]:
        return self._post("get_all_models", {"verbose": verbose}).json()

    def get_model_info(self, name: str, version: Any) -> dict[str, Any] | None:
        info = self._post("get_model", {"model_name": name, "model_version": str(version)}).json()
        if not info:
            self.logger.warning("Model %s:%s is not registered with Clipper", name, version)
            return None
        return info

    def get_all_model_replicas(self, verbose: bool = False) -> list[Any]:
        return self._post("get_all_containers", {"verbose": verbose}).json()

    def get_model_replica_info(self, name: str, version: Any,
                               replica_id: int) -> dict[str, Any] | None:
        info = self._post("get_container", {"model_name": name, "model_version": str(version),
                                            "replica_id": replica_id}).json()
        if not info:
            self.logger.warning("No model replica %s:%s:%s is connected", name, version,
                                replica_id)
            return None
        return info

    def set_model_version(self, name: str, version: Any, num_replicas: int | None = None) -> None:
        version = str(version)
        self._post("set_model_version", {"model_name": name, "model_version": version})
        self.logger.info("Model %s is now at version %s", name, version)
        if num_replicas is not None:
            self.set_num_replicas(name, num_replicas, version)

    # -- observing ----------------------------------------------------------------------
    def get_clipper_logs(self, logging_dir: str = "clipper_logs/") -> list[str]:
        """Copy every process's log of the cluster into ``logging_dir``; return the paths."""
        self._require_connected()
        return self.cm.get_logs(logging_dir)

    def inspect_instance(self) -> dict[str, Any]:
        """The query frontend's metrics (``GET /metrics``) as a dict."""
        self._require_connected()
        url = self._url(self.cm.get_query_addr(), "/metrics")
        try:
            r = self._session.get(url, timeout=REQUEST_TIMEOUT_S, verify=self._verify())
        except requests.ConnectionError as exc:
            msg = f"Cannot reach the query frontend at {url}: {exc}"
            raise ClipperException(msg) from None
        if r.status_code != requests.codes.ok:
            msg = f"Received error status code: {r.status_code} and message: {r.text}"
            raise ClipperException(msg)
        return r.json()

    def get_query_addr(self) -> str:
        self._require_connected()
        return self.cm.get_query_addr()

    def get_metric_addr(self) -> str:
        self._require_connected()
        return self.cm.get_metric_addr()

    # -- stopping -----------------------------------------------------------------------
    def _versions_of(self, model_names: list[str], inactive_only: bool = False
                     ) -> dict[str, list[str]]:
        versions: dict[str, list[str]] = {}
        for model in self.get_all_models(verbose=True):
            if model["model_name"] in model_names and not (
                    inactive_only and model["is_current_version"]):
                versions.setdefault(model["model_name"], []).append(model["model_version"])
        return versions

    def _unregister_versioned_models(self, model_versions_dict: dict[str, list[str]]) -> None:
        for name, versions in model_versions_dict.items():
            for version in versions:
                self._post("delete_versioned_model",
                           {"model_name": name, "model_version": str(version)})

    def stop_models(self, model_names: list[str]) -> None:
        """Stop every replica of every version of ``model_names`` and unregister them."""
        self._require_connected()
        versions = self._versions_of(list(model_names))
        self.cm.stop_models(versions)
        self._unregister_versioned_models(versions)
        self.logger.info("Stopped all containers for these models and versions:\n%s", versions)

    def stop_versioned_models(self, model_versions_dict: dict[str, list[Any]]) -> None:
        """Stop and unregister the given ``{model name: [versions]}``."""
        self._require_connected()
        versions = {name: [str(v) for v in vs] for name, vs in model_versions_dict.items()}
        self.cm.stop_models(versions)
        self._unregister_versioned_models(versions)
        self.logger.info("Stopped all containers for these models and versions:\n%s", versions)

    def stop_inactive_model_versions(self, model_names: list[str]) -> None:
        """Stop and unregister every version of ``model_names`` that is not current."""
        self._require_connected()
        versions = self._versions_of(list(model_names), inactive_only=True)
        self.cm.stop_models(versions)
        self._unregister_versioned_models(versions)
        self.logger.info("Stopped all containers for these models and versions:\n%s", versions)

    def stop_all_model_containers(self) -> None:
        """Stop every model replica; when connected, also unregister every model version.

        Works without ``connect()`` (and with a crashed management frontend): the replicas
        are stopped first, by the container manager.
        """
        self.cm.stop_all_model_containers()
        self.logger.info("Stopped all Clipper model containers")
        if self.connected:
            versions: dict[str, list[str]] = {}
            for model in self.get_all_models(verbose=True):
                versions.setdefault(model["model_name"], []).append(model["model_version"])
            self._unregister_versioned_models(versions)

    def stop_all(self, graceful: bool = True) -> None:
        """Stop the whole cluster (frontends, store, replicas); needs no connection."""
        self.cm.stop_all(graceful=graceful)
        self.connected = False

    # -- local testing ------------------------------------------------------------------
    def test_predict_function(self, query: dict[str, Any], func: Callable[[Any], Any],
                              input_type: str) -> Any:
        """Run ``func`` locally on ``query`` as a replica would receive it.

        ``query`` is a request body (``{"input": ...}`` or ``{"input_batch": [...]}``). The
        inputs are type-checked and converted like the query frontend does; ``func`` is
        round-tripped through cloudpickle (as deployers do) and its result returned. A query
        of the wrong shape or type returns the string ``"Invalid input type or JSON key"`` or
        ``"Invalid input type"``, as the original did.
        """
        if not self.connected:
            self.connect()
        if "input" in query:
            inputs = [query["input"]]
        elif "input_batch" in query and isinstance(query["input_batch"], list):
            inputs = query["input_batch"]
        else:
            return "Invalid input type or JSON key"
        itype = InputType.parse(input_type)
        try:
            data = [_decode_input(x, itype) for x in inputs]
        except (TypeError, ValueError):
            return "Invalid input type"
        reloaded = load_pickle(io.BytesIO(cloudpickle.dumps(func)))
        return reloaded(data)


def _decode_input(value: Any, itype: InputType) -> Any:
    """One input as a replica receives it (spec §1.2, §4.5); TypeError if it has the wrong type."""
    if itype.is_numeric_array:
        wanted = int if itype is InputType.INTEGERS else float
        if not isinstance(value, list) or not all(
                type(x) is wanted for x in value):  # bool is not a number here
            raise TypeError(value)
        return np.array(value, dtype=itype.numpy_dtype)
    if not isinstance(value, str):
        raise TypeError(value)
    if itype is InputType.BYTES:
        return np.frombuffer(base64.b64decode(value), dtype=np.int8)
    return value.encode()  # strings arrive as bytes objects


def _validate_versioned_model_name(name: str, version: str) -> None:
    """Raise ClipperException (a ValidationError) unless both are DNS-1123 labels (spec §2.4)."""
    validate_dns1123(name, "model name")
    validate_dns1123(version, "model version")


__all__ = ["CLIPPER_REGISTRY", "CLIPPER_TEMP_DIR", "DEFAULT_PREDICTION_CACHE_SIZE_BYTES",
           "ClipperConnection"]
