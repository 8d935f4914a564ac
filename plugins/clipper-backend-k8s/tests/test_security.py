"""Secrets under Kubernetes: Redis wants the password of the cluster's Secret, a model pod
without the replica secret gets no queries, and the frontends speak HTTPS with a certificate
(docs/security.md)."""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from clipper_backend_k8s import manifests

from clipper_admin import ClipperConnection, KubernetesContainerManager
from clipper_core.backends.api import CLIPPER_DOCKER_LABEL
from clipper_core.deployers.api import write_bundle
from clipper_core.deployers.python import PythonDeployer

pytestmark = pytest.mark.k8s


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


def secret_value(conn: ClipperConnection, key: str) -> str:
    cm = conn.cm
    secret = cm.core.read_namespaced_secret(manifests.token_name(cm.cluster_name), cm.namespace)
    return base64.b64decode(secret.data[key]).decode()


def test_redis_wants_the_password_of_the_clusters_secret(shared_conn: ClipperConnection) -> None:
    cm = shared_conn.cm
    svc = cm.core.read_namespaced_service(manifests.redis_name(cm.cluster_name), cm.namespace)
    assert svc.spec.type == "ClusterIP"  # reachable from the cluster's nodes and pods only
    host, port = svc.spec.cluster_ip, svc.spec.ports[0].port
    password = secret_value(shared_conn, manifests.REDIS_PASSWORD_KEY)
    for guess in (None, "guessed"):
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host, port, password=guess, socket_timeout=10).ping()
    assert redis.Redis(host, port, password=password, socket_timeout=10).ping()
    for dep in cm.apps.list_namespaced_deployment(
            cm.namespace, label_selector=f"{CLIPPER_DOCKER_LABEL}={cm.cluster_name}").items:
        assert password not in str(dep.to_dict()), dep.metadata.name


def test_a_model_pod_without_the_replica_secret_gets_no_queries(
        kh: Any, shared_conn: ClipperConnection, tmp_path: Path) -> None:
    conn, cm = shared_conn, shared_conn.cm
    write_bundle(PythonDeployer(), tmp_path / "model", "doubles", feature_sum)
    image = conn.build_model("nosecret", "1", str(tmp_path / "model"),
                             cm.default_base_image("python"))
    conn.register_application("nosecret-app", "doubles", "DEFAULT", 1_000_000)
    conn.register_model("nosecret", "1", "doubles", image)
    conn.link_model_to_app("nosecret-app", "nosecret")
    frontend_ip = cm.core.read_namespaced_service(
        manifests.frontend_name(cm.cluster_name, 0), cm.namespace).spec.cluster_ip
    obj = manifests.model(cm.cluster_name, "nosecret", "1", "doubles", image, 1, 0, frontend_ip)
    container = obj["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] != "CLIPPER_REPLICA_SECRET"]
    cm.apps.create_namespaced_deployment(cm.namespace, obj)
    refusal = "refused a container registering as nosecret:1: it presented no replica secret"
    deadline = time.monotonic() + 180
    while refusal not in kh.frontend_log(conn) and time.monotonic() < deadline:
        time.sleep(1)
    assert refusal in kh.frontend_log(conn)
    assert kh.predict(conn.get_query_addr(), "nosecret-app", [1.0, 2.0])["default"] is True
    # The same pod with the secret (the backend's own manifest) is served.
    cm.deploy_model("nosecret", "1", "doubles", image)
    assert kh.wait_for_prediction(conn.get_query_addr(), "nosecret-app", [1.0, 2.0])[
        "output"] == 3.0
    cm.stop_models({"nosecret": ["1"]})


def test_a_secret_from_an_earlier_release_gains_the_keys_it_lacks(kube: str, kh: Any) -> None:
    cm = kh.new_manager(kube, "k8s-old-secret")
    name = manifests.token_name(cm.cluster_name)
    cm.core.create_namespaced_secret(cm.namespace, {  # the management token only
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": manifests.labels(cm.cluster_name, "management")},
        "type": "Opaque", "stringData": {manifests.TOKEN_KEY: "token-of-the-earlier-release"}})
    conn = ClipperConnection(cm)
    try:
        conn.start_clipper()  # Redis wants the password: it starts only if the key was added
        assert secret_value(conn, manifests.TOKEN_KEY) == "token-of-the-earlier-release"
        for key in (manifests.REPLICA_SECRET_KEY, manifests.REDIS_PASSWORD_KEY):
            assert len(secret_value(conn, key)) >= 32, key
        conn.register_application("kept", "doubles", "0.0", 100000)
        assert conn.get_all_apps() == ["kept"]
    finally:
        conn.stop_all(graceful=False)


def test_tls_on_both_frontends_and_back_to_http(
        kube: str, start_cluster: Callable[..., ClipperConnection], tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    conn = start_cluster("k8s-tls", tls_cert_file=str(cert), tls_key_file=str(key))
    conn.register_application("tls-app", "doubles", "DEFAULT", 100_000)  # HTTPS, verified
    query = f"{conn.get_query_addr()}/tls-app/predict"
    answer = requests.post(f"https://{query}", json={"input": [1.0]}, verify=str(cert),
                           timeout=10)
    assert answer.status_code == 200 and answer.json()["default"] is True
    with pytest.raises(requests.ConnectionError):
        requests.post(f"http://{query}", json={"input": [1.0]}, timeout=10)
    # A manager without the files verifies with the certificate of the cluster's Secret.
    again = ClipperConnection(KubernetesContainerManager(
        cluster_name=conn.cm.cluster_name, kubeconfig=kube, node_address="127.0.0.1"))
    again.connect()
    assert again.cm.tls_ca_file is not None
    assert Path(again.cm.tls_ca_file).read_text() == cert.read_text()
    assert again.get_all_apps() == ["tls-app"]
    # Started again without them, the same cluster converges to plain HTTP.
    again.start_clipper()
    assert again.cm.tls_ca_file is None
    assert requests.post(f"http://{query}", json={"input": [1.0]}, timeout=10).json()[
        "default"] is True
