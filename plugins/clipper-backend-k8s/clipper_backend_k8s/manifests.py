"""The Kubernetes objects of a Clipper cluster, as plain dicts (names and labels of spec §10.5).

Every object carries ``ai.clipper.container.label=<cluster>`` and ``ai.clipper.name=<role>``::

    redis-at-<cluster>                        Deployment + Service (port redis_port -> 6379)
    mgmt-frontend-at-<cluster>                Deployment + Service (1338)
    query-frontend-<i>-at-<cluster>           Deployment (frontend id i) + Service (RPC, 7000)
    query-frontend-at-<cluster>               Service over every query frontend (1337)
    mgmt-token-at-<cluster>                   Secret: the management API token, the
                                              replica secret and Redis's password
                                              (docs/security.md)
    tls-at-<cluster>                          Secret (kubernetes.io/tls): the frontends'
                                              certificate and key, when they speak HTTPS
    <model>-<version>-deployment-at-<i>-at-<cluster>
                                              Deployment of a model version's replicas that
                                              connect to query frontend i

Pods address each other by ClusterIP, never by DNS name, so a cluster without cluster DNS
works too.
"""

from __future__ import annotations

from typing import Any

from clipper_core.backends.api import (
    CLIPPER_DOCKER_LABEL,
    CLIPPER_INTERNAL_MANAGEMENT_PORT,
    CLIPPER_INTERNAL_QUERY_PORT,
    CLIPPER_INTERNAL_REDIS_PORT,
    CLIPPER_INTERNAL_RPC_PORT,
    CLIPPER_MODEL_CONTAINER_LABEL,
    CLIPPER_NAME_LABEL,
    CLIPPER_QUERY_FRONTEND_ID_LABEL,
    create_model_container_label,
)
from clipper_core.backends.docker import REDIS_COMMAND
from clipper_core.runtime.config import DEFAULT_READY_FILE

#: Keys of the management token, the replica secret and Redis's password in the token Secret.
TOKEN_KEY = "token"
REPLICA_SECRET_KEY = "replica-secret"
REDIS_PASSWORD_KEY = "redis-password"
#: The environment variable holding Redis's password in the Redis and frontend pods (the one
#: REDIS_COMMAND reads).
REDIS_PASSWORD_ENV = "REDIS_PASSWORD"
#: Where the frontend pods mount the TLS Secret (optional: without it they speak HTTP).
TLS_MOUNT = "/run/clipper-tls"
#: Service types the original accepted, per service key.
SERVICE_KEYS = ("redis", "management", "query", "query-rpc", "metric")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")


def redis_name(cluster: str) -> str:
    return f"redis-at-{cluster}"


def mgmt_name(cluster: str) -> str:
    return f"mgmt-frontend-at-{cluster}"


def query_name(cluster: str) -> str:
    return f"query-frontend-at-{cluster}"


def frontend_name(cluster: str, frontend_id: int) -> str:
    return f"query-frontend-{frontend_id}-at-{cluster}"


def token_name(cluster: str) -> str:
    return f"mgmt-token-at-{cluster}"


def tls_name(cluster: str) -> str:
    return f"tls-at-{cluster}"


def model_name(cluster: str, name: str, version: str, frontend_id: int) -> str:
    return f"{name}-{version}-deployment-at-{frontend_id}-at-{cluster}"


def labels(cluster: str, role: str, **extra: str) -> dict[str, str]:
    return {CLIPPER_DOCKER_LABEL: cluster, CLIPPER_NAME_LABEL: role, **extra}


def selector(labels_: dict[str, str]) -> str:
    """A label selector string: ``k=v`` pairs, or just ``k`` where the value is None."""
    return ",".join(k if v is None else f"{k}={v}" for k, v in labels_.items())


def _env(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def _probes(probe: dict[str, Any], startup_s: int) -> dict[str, Any]:
    """Startup (up to ``startup_s``), readiness and liveness probes doing the same check.

    The startup probe runs every second, so that a pod is ready soon after it can be; the
    readiness probe, which runs for the pod's whole life, every 2 s (an exec probe costs the
    container runtime ~15 ms of CPU). Timeouts are generous: a frontend busy with load must not
    be killed for a slow answer.
    """
    return {
        "startupProbe": {**probe, "periodSeconds": 1, "timeoutSeconds": 5,
                         "failureThreshold": max(startup_s, 1)},
        "readinessProbe": {**probe, "periodSeconds": 2, "timeoutSeconds": 5,
                           "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 10, "timeoutSeconds": 10,
                          "failureThreshold": 6},
    }


def deployment(name: str, labels_: dict[str, str], container: dict[str, Any], replicas: int,
               grace_s: int, volumes: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """A Deployment of ``replicas`` pods running ``container``, selected by ``labels_``."""
    container = {"imagePullPolicy": "IfNotPresent", **container}
    pod: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": grace_s,
                           "enableServiceLinks": False}
    if volumes:
        pod["volumes"] = list(volumes)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels_},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels_},
            # Rolling updates start the new pod before the old one goes.
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels_},
                "spec": pod,
            },
        },
    }


def service(name: str, labels_: dict[str, str], select: dict[str, str], port: int,
            target_port: int, service_type: str) -> dict[str, Any]:
    """A Service named port ``str(port)`` (the original's port names) onto ``target_port``."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": labels_},
        "spec": {"type": service_type, "selector": select,
                 "ports": [{"name": str(target_port), "port": port, "targetPort": target_port,
                            "protocol": "TCP"}]},
    }


def token_secret(cluster: str, token: str, replica_secret: str, redis_password: str
                 ) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": token_name(cluster), "labels": labels(cluster, "management")},
            "type": "Opaque", "stringData": {TOKEN_KEY: token, REPLICA_SECRET_KEY: replica_secret,
                                             REDIS_PASSWORD_KEY: redis_password}}


def tls_secret(cluster: str, cert_pem: str, key_pem: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": tls_name(cluster), "labels": labels(cluster, "management")},
            "type": "kubernetes.io/tls", "stringData": {"tls.crt": cert_pem, "tls.key": key_pem}}


def _tls(cluster: str, tls: bool) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """A frontend's TLS environment, volume mount and volume. Every frontend mounts the
    (optional) TLS Secret, so that a patch turns TLS on or off by the environment alone."""
    env = _env({"CLIPPER_TLS_CERT_FILE": f"{TLS_MOUNT}/tls.crt" if tls else "",
                "CLIPPER_TLS_KEY_FILE": f"{TLS_MOUNT}/tls.key" if tls else ""})
    mount = {"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True}
    volume = {"name": "tls", "secret": {"secretName": tls_name(cluster), "optional": True}}
    return env, mount, volume


def _replica_secret_env(cluster: str) -> dict[str, Any]:
    """``CLIPPER_REPLICA_SECRET`` from the token Secret (optional: a Secret made before the
    key existed leaves it unset, and the frontend then admits every replica)."""
    return {"name": "CLIPPER_REPLICA_SECRET", "valueFrom": {"secretKeyRef": {
        "name": token_name(cluster), "key": REPLICA_SECRET_KEY, "optional": True}}}


def _redis_password_env(cluster: str) -> dict[str, Any]:
    """``REDIS_PASSWORD`` from the token Secret."""
    return {"name": REDIS_PASSWORD_ENV, "valueFrom": {"secretKeyRef": {
        "name": token_name(cluster), "key": REDIS_PASSWORD_KEY}}}


def store_url(cluster: str, host: str, port: int, with_password: bool
              ) -> tuple[str, list[dict[str, Any]]]:
    """``CLIPPER_STORE_URL`` of the frontends and the environment it needs: with
    ``with_password``, the password comes from the Secret and is expanded by the kubelet
    (it never shows in the Deployment)."""
    if not with_password:
        return f"redis://{host}:{port}/0", []
    return (f"redis://:$({REDIS_PASSWORD_ENV})@{host}:{port}/0",
            [_redis_password_env(cluster)])


def redis(cluster: str, image: str, port: int, service_type: str) -> list[dict[str, Any]]:
    """Redis with the Secret's password (``requirepass``, written from the environment into a
    file so it never appears on a command line); the probe authenticates likewise."""
    lab = labels(cluster, "redis")
    container = {
        "name": "redis", "image": image, "env": [_redis_password_env(cluster)],
        "command": REDIS_COMMAND,
        "ports": [{"containerPort": CLIPPER_INTERNAL_REDIS_PORT}],
        **_probes({"exec": {"command": [
            "sh", "-c", f'REDISCLI_AUTH="${REDIS_PASSWORD_ENV}" redis-cli ping | grep -q PONG']}},
            60),
    }
    return [deployment(redis_name(cluster), lab, container, 1, 5),
            service(redis_name(cluster), lab, lab, port, CLIPPER_INTERNAL_REDIS_PORT,
                    service_type)]


def management(cluster: str, image: str, store: tuple[str, list[dict[str, Any]]],
               service_type: str, tls: bool) -> list[dict[str, Any]]:
    """The management frontend (HTTPS with ``tls``); ``store`` is :func:`store_url`'s
    answer."""
    lab = labels(cluster, "management-frontend")
    tls_env, mount, volume = _tls(cluster, tls)
    env = [*store[1], *_env({"CLIPPER_CLUSTER_NAME": cluster, "CLIPPER_STORE_URL": store[0],
                "CLIPPER_ROLES": "management", "CLIPPER_MANAGEMENT_HOST": "0.0.0.0",
                "CLIPPER_MANAGEMENT_PORT": str(CLIPPER_INTERNAL_MANAGEMENT_PORT)})]
    env.append({"name": "CLIPPER_MANAGEMENT_TOKEN", "valueFrom": {
        "secretKeyRef": {"name": token_name(cluster), "key": TOKEN_KEY}}})
    container = {
        "name": "mgmt-frontend", "image": image, "env": [*env, *tls_env],
        "volumeMounts": [mount], "ports": [{"containerPort": CLIPPER_INTERNAL_MANAGEMENT_PORT}],
        **_probes({"tcpSocket": {"port": CLIPPER_INTERNAL_MANAGEMENT_PORT}}, 120),
    }
    return [deployment(mgmt_name(cluster), lab, container, 1, 10, (volume,)),
            service(mgmt_name(cluster), lab, lab, CLIPPER_INTERNAL_MANAGEMENT_PORT,
                    CLIPPER_INTERNAL_MANAGEMENT_PORT, service_type)]


def query_frontend(cluster: str, frontend_id: int, image: str,
                   store: tuple[str, list[dict[str, Any]]], cache_size: int,
                   request_timeout_s: int, rpc_service_type: str, tls: bool,
                   tracing: dict[str, str]) -> list[dict[str, Any]]:
    """Frontend ``frontend_id`` (HTTPS with ``tls``; tracing with ``tracing``, the variables
    of :func:`~clipper_core.config.tracing_environment`): its Deployment and the RPC Service
    its model replicas use; ``store`` is :func:`store_url`'s answer."""
    tls_env, mount, volume = _tls(cluster, tls)
    lab = labels(cluster, "query-frontend", **{CLIPPER_QUERY_FRONTEND_ID_LABEL: str(frontend_id)})
    env = [*store[1], *_env({"CLIPPER_CLUSTER_NAME": cluster, "CLIPPER_STORE_URL": store[0],
                "CLIPPER_ROLES": "query", "CLIPPER_BIND_HOST": "0.0.0.0",
                "CLIPPER_QUERY_PORT": str(CLIPPER_INTERNAL_QUERY_PORT),
                "CLIPPER_RPC_PORT": str(CLIPPER_INTERNAL_RPC_PORT),
                "CLIPPER_FRONTEND_ID": str(frontend_id),
                "CLIPPER_CACHE_SIZE": str(cache_size),
                "CLIPPER_REQUEST_TIMEOUT_S": str(request_timeout_s),
                # always set, so that a patch also turns tracing off
                "CLIPPER_TRACING_ENDPOINT": "", "CLIPPER_TRACING_SAMPLE_RATIO": "1",
                **tracing})]
    env.append(_replica_secret_env(cluster))
    probe = {"path": "/metrics", "port": CLIPPER_INTERNAL_QUERY_PORT,
             "scheme": "HTTPS" if tls else "HTTP"}  # the kubelet does not verify certificates
    container = {
        "name": "query-frontend", "image": image, "env": [*env, *tls_env],
        "volumeMounts": [mount], "ports": [{"containerPort": CLIPPER_INTERNAL_QUERY_PORT},
                                           {"containerPort": CLIPPER_INTERNAL_RPC_PORT}],
        **_probes({"httpGet": probe}, 120),
    }
    name = frontend_name(cluster, frontend_id)
    return [deployment(name, lab, container, 1, 10, (volume,)),
            service(name, lab, lab, CLIPPER_INTERNAL_RPC_PORT, CLIPPER_INTERNAL_RPC_PORT,
                    rpc_service_type)]


def query_service(cluster: str, service_type: str) -> dict[str, Any]:
    """The Service spreading queries over every query frontend."""
    lab = labels(cluster, "query-frontend")
    return service(query_name(cluster), lab, lab, CLIPPER_INTERNAL_QUERY_PORT,
                   CLIPPER_INTERNAL_QUERY_PORT, service_type)


def model(cluster: str, name: str, version: str, input_type: str, image: str, replicas: int,
          frontend_id: int, frontend_ip: str) -> dict[str, Any]:
    """Replicas of ``name:version`` connecting to query frontend ``frontend_id`` (spec §5.1)."""
    lab = labels(cluster, "model", **{
        CLIPPER_MODEL_CONTAINER_LABEL: create_model_container_label(name, version),
        CLIPPER_QUERY_FRONTEND_ID_LABEL: str(frontend_id)})
    container = {
        "name": "model", "image": image,
        "env": [*_env({"CLIPPER_MODEL_NAME": name, "CLIPPER_MODEL_VERSION": version,
                       "CLIPPER_INPUT_TYPE": input_type, "CLIPPER_IP": frontend_ip,
                       "CLIPPER_PORT": str(CLIPPER_INTERNAL_RPC_PORT)}),
                _replica_secret_env(cluster)],
        # The runtime writes the ready file once the model is loaded; a framework import may
        # take minutes.
        **_probes({"exec": {"command": ["cat", DEFAULT_READY_FILE]}}, 600),
    }
    return deployment(model_name(cluster, name, version, frontend_id), lab, container,
                      replicas, 5)
