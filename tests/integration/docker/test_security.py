"""Security defaults of the Docker backend: Redis password and bind, management token."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from clipper_admin import ClipperConnection
from clipper_core.backends.docker import CLIPPER_REDIS_CONTAINER_LABEL, DockerContainerManager
from clipper_core.testing.docker import new_manager

pytestmark = pytest.mark.docker


def test_redis_needs_its_password_and_listens_on_localhost(shared_conn: ClipperConnection,
                                                          dh: Any) -> None:
    cm = shared_conn.cm
    assert stat.S_IMODE(cm.secrets_path.stat().st_mode) == 0o600
    password = json.loads(cm.secrets_path.read_text())["redis_password"]
    (container,) = dh.cluster_containers(shared_conn, CLIPPER_REDIS_CONTAINER_LABEL)
    bindings = container.attrs["HostConfig"]["PortBindings"]["6379/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    assert b"NOAUTH" in container.exec_run(["redis-cli", "ping"]).output
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=cm.redis_port).ping()
    assert redis.Redis(port=cm.redis_port, password=password).ping()
    assert password not in " ".join(container.attrs["Args"])


def test_the_management_api_needs_the_token(shared_conn: ClipperConnection) -> None:
    cm = shared_conn.cm
    url = f"http://{cm.get_admin_addr()}/admin/get_all_applications"
    refused = requests.post(url, json={}, timeout=10)
    assert refused.status_code == 401
    assert "secrets.json" in refused.json()["cause"]
    token = json.loads(cm.secrets_path.read_text())["management_token"]
    ok = requests.post(url, json={}, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert ok.status_code == 200
    # A new connection reads the token from the containers, not from this machine's file.
    again = ClipperConnection(type(cm)(cluster_name=cm.cluster_name))
    again.connect()
    assert again.cm.management_token == token
    assert again.get_all_apps() == ok.json()


def test_tls_on_both_frontends(docker_engine: Any, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    cm = new_manager("h4-tls", tls_cert_file=str(cert), tls_key_file=str(key))
    conn = ClipperConnection(cm)
    try:
        conn.start_clipper()
        conn.register_application("tls-app", "doubles", "DEFAULT", 100_000)
        answer = requests.post(f"https://{conn.get_query_addr()}/tls-app/predict",
                               json={"input": [1.0]}, verify=str(cert), timeout=10)
        assert answer.status_code == 200 and answer.json()["default"] is True
        again = ClipperConnection(DockerContainerManager(cluster_name=cm.cluster_name))
        again.connect()
        assert again.cm.tls_ca_file == str(cert.resolve())
        assert again.get_all_apps() == ["tls-app"]
        with pytest.raises(requests.ConnectionError):
            requests.post(f"http://{conn.get_query_addr()}/tls-app/predict",
                          json={"input": [1.0]}, timeout=10)
    finally:
        conn.stop_all(graceful=False)
