"""Security defaults of the embedded default on real processes: token, replica secret, TLS."""

from __future__ import annotations

import json
import socket
import stat
import subprocess

import requests

from clipper_admin import ClipperConnection
from clipper_admin.deployers import python as python_deployer
from clipper_core import cli


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


def non_loopback_ip() -> str:
    """This machine's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.254", 9))
        ip = sock.getsockname()[0]
    assert not ip.startswith("127."), ip
    return ip


def test_off_loopback_the_management_api_needs_the_generated_token(start_cluster, helpers,
                                                                    capsys):
    conn = start_cluster("secure-test", management_host="0.0.0.0")
    cm = conn.cm
    assert stat.S_IMODE(cm.secrets_path.stat().st_mode) == 0o600
    token = json.loads(cm.secrets_path.read_text())["management_token"]
    assert json.loads(cm.config_path.read_text())["management_token"] is None
    base = f"http://{non_loopback_ip()}:{cm.clipper_management_port}"
    assert requests.get(f"{base}/admin/ping", timeout=10).text == "PONG"
    url = f"{base}/admin/get_all_applications"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        refused = requests.post(url, json={}, headers=headers, timeout=10)
        assert refused.status_code == 401
        assert str(cm.secrets_path) in refused.json()["cause"]
    ok = requests.post(url, json={}, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert (ok.status_code, ok.json()) == (200, [])

    # The client reads the token from the cluster's directory; the replica gets the secret.
    python_deployer.create_endpoint(conn, "secure-app", "doubles", feature_sum)
    assert helpers.wait_for_prediction(conn, "secure-app", {"input": [1.5, 2.0]})["output"] == 3.5
    again = ClipperConnection(helpers.local_manager(cm.cluster_dir.parent, "secure-test"))
    again.connect()
    assert again.get_all_apps() == ["secure-app"]
    assert cli.main(["token", "--cluster-name", "secure-test",
                     "--cluster-dir", str(cm.cluster_dir)]) == 0
    assert capsys.readouterr().out.strip() == token


def test_tls_on_both_frontends(start_cluster, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    conn = start_cluster("tls-test", tls_cert_file=str(cert), tls_key_file=str(key))
    conn.register_application("tls-app", "doubles", "DEFAULT", 100_000)
    assert conn.get_all_apps() == ["tls-app"]
    query = f"{conn.get_query_addr()}/tls-app/predict"
    answer = requests.post(f"https://{query}", json={"input": [1.0]}, verify=str(cert),
                           timeout=10)
    assert answer.status_code == 200 and answer.json()["default"] is True
    try:
        requests.post(f"http://{query}", json={"input": [1.0]}, timeout=10)
    except requests.ConnectionError:
        pass  # plain HTTP is not answered
    else:
        raise AssertionError("plain HTTP was answered on a TLS frontend")
