"""The management frontend's HTTP behaviour: parsing, strict types, auth, errors, robustness."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from clipper_core.config import ClusterConfig
from clipper_core.exceptions import ValidationError
from clipper_core.frontend.management import ROUTES, ManagementFrontend
from clipper_core.store.redis import RedisStore
from clipper_core.store.sqlite import SQLiteStore
from clipper_core.testing.servers import RedisServer

ADD_APP_SCHEMA = ('{"name" := string, "input_type" := "integers" | "bytes" | "floats" | '
                  '"doubles" | "strings", "default_output" := string, '
                  '"latency_slo_micros" := int}')
APP = {"name": "a", "input_type": "doubles", "default_output": "", "latency_slo_micros": 5}


def test_ping(mgmt) -> None:
    resp = requests.get(f"{mgmt.base}/admin/ping", timeout=5)
    assert (resp.status_code, resp.text) == (200, "PONG")
    resp = mgmt.post("ping", {})
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "GET"


def test_unknown_route_is_a_json_404(mgmt) -> None:
    for path in ["/admin/nope", "/", "/admin", "/admin/add_app/extra", "/metrics"]:
        resp = requests.post(mgmt.base + path, json={}, timeout=5)
        assert resp.status_code == 404, path
        body = resp.json()
        assert list(body) == ["error", "cause"]
        assert body["error"] == "Not Found"
        assert "POST /admin/add_app" in body["cause"]


def test_get_on_a_post_route_is_a_405(mgmt) -> None:
    resp = requests.get(f"{mgmt.base}/admin/get_all_models", timeout=5)
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "POST"
    assert "accepts POST requests, not GET" in resp.json()["cause"]


def test_trailing_slash_is_accepted(mgmt) -> None:
    resp = requests.post(f"{mgmt.base}/admin/get_all_models/", json={"verbose": False},
                         timeout=5)
    assert (resp.status_code, resp.json()) == (200, [])


@pytest.mark.parametrize("data", [b"{", b"not json", b'{"name": "a",}', b"\xff\xfe",
                                  b'{"name": NaN}', b""])
def test_malformed_json(mgmt, data) -> None:
    msg = mgmt.error("add_app", data=data)
    assert msg.startswith("Error parsing JSON: JSON parse error: ")
    assert msg.endswith(f". Expected JSON schema: {ADD_APP_SCHEMA}")


@pytest.mark.parametrize(("data", "found"), [(b"[]", "array"), (b'"x"', "string"),
                                             (b"3", "int"), (b"null", "null")])
def test_body_must_be_an_object(mgmt, data, found) -> None:
    assert mgmt.error("add_app", data=data) == (
        f"Error parsing JSON: Expected a JSON object but found type {found}. Expected JSON "
        f"schema: {ADD_APP_SCHEMA}")


def test_missing_key(mgmt) -> None:
    body = {k: v for k, v in APP.items() if k != "latency_slo_micros"}
    assert mgmt.error("add_app", body) == (
        "Error parsing JSON: JSON object does not have required key latency_slo_micros. "
        f"Expected JSON schema: {ADD_APP_SCHEMA}")


@pytest.mark.parametrize(("value", "found"), [
    (100.0, "float"), ("100", "string"), (True, "bool"), (None, "null"), ([1], "array"),
    ({}, "object"),
])
def test_ints_must_be_json_ints(mgmt, value, found) -> None:
    msg = mgmt.error("add_app", {**APP, "latency_slo_micros": value})
    assert msg.startswith("Error parsing JSON: Type mismatch! JSON key latency_slo_micros "
                          f"expected type int but found type {found}. Expected JSON schema:")


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 2**63])
def test_ints_must_fit_in_32_bits(mgmt, value) -> None:
    msg = mgmt.error("add_app", {**APP, "latency_slo_micros": value})
    assert "expected a 32-bit int in [-2147483648, 2147483647]" in msg


@pytest.mark.parametrize(("value", "found"), [(1, "int"), ("true", "string"), (0, "int")])
def test_bools_must_be_bools(mgmt, value, found) -> None:
    assert mgmt.error("get_all_models", {"verbose": value}).startswith(
        f"Error parsing JSON: Type mismatch! JSON key verbose expected type bool but found "
        f"type {found}.")


@pytest.mark.parametrize(("route", "body", "key"), [
    ("add_app", {**APP, "name": 5}, "name"),
    ("add_app", {**APP, "input_type": 3}, "input_type"),
    ("add_app", {**APP, "default_output": ["x"]}, "default_output"),
    ("delete_app", {"name": None}, "name"),
    ("get_application", {"name": 1}, "name"),
    ("get_linked_models", {"app_name": False}, "app_name"),
    ("get_model", {"model_name": "m", "model_version": 1}, "model_version"),
    ("get_container", {"model_name": "m", "model_version": "1", "replica_id": "0"},
     "replica_id"),
    ("get_state", {"app_name": "a", "uid": 0.0}, "uid"),
    ("set_model_version", {"model_name": "m", "model_version": 2}, "model_version"),
    ("delete_versioned_model", {"model_name": ["m"], "model_version": "1"}, "model_name"),
    ("add_model", {"model_name": "m", "model_version": "1", "input_type": "bytes",
                   "batch_size": True}, "batch_size"),
])
def test_wrong_json_types_name_the_key(mgmt, route, body, key) -> None:
    msg = mgmt.error(route, body)
    assert msg.startswith(f"Error parsing JSON: Type mismatch! JSON key {key} expected type ")
    assert f'"{key}" := ' in msg  # the schema says what is expected


@pytest.mark.parametrize(("value", "message"), [
    ("m", "JSON key model_names expected type array of strings but found type string"),
    ([1], "Array input of type int is not of type string"),
    (["m", None], "Array input of type null is not of type string"),
])
def test_lists_must_be_lists_of_strings(mgmt, value, message) -> None:
    msg = mgmt.error("add_model_links", {"app_name": "a", "model_names": value})
    assert message in msg
    msg = mgmt.error("add_model", {"model_name": "m", "model_version": "1",
                                   "input_type": "bytes", "labels": value})
    assert message.replace("model_names", "labels") in msg


def test_unknown_keys_are_ignored(mgmt) -> None:
    assert mgmt.post("add_app", {**APP, "extra": 1}).status_code == 200


def test_body_size_limit(start_frontend) -> None:
    mgmt = start_frontend(max_body_bytes=1000)
    resp = mgmt.post("add_app", {**APP, "default_output": "x" * 2000})
    assert resp.status_code == 413
    assert "larger than the limit of 1000 bytes" in resp.json()["cause"]
    assert requests.get(f"{mgmt.base}/admin/ping", timeout=5).text == "PONG"


# -- auth ---------------------------------------------------------------------------------
def test_token_auth(start_frontend) -> None:
    mgmt = start_frontend(management_token="s3cret", require_management_token=True)
    assert requests.get(f"{mgmt.base}/admin/ping", timeout=5).text == "PONG"
    for headers in [None, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                    {"Authorization": "Basic s3cret"}, {"Authorization": "Bearer "}]:
        for route in ["add_app", "get_all_models", "nope"]:
            resp = mgmt.post(route, APP, headers=headers)
            assert resp.status_code == 401, (headers, route)
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            assert "Authorization: Bearer <token>" in resp.json()["cause"]
    assert mgmt.store.list_applications() == []  # nothing was added
    ok = {"Authorization": "Bearer s3cret"}
    assert mgmt.post("add_app", APP, headers=ok).status_code == 200
    assert mgmt.post("get_all_applications", {}, headers=ok).json() == ["a"]
    assert mgmt.post("nope", {}, headers=ok).status_code == 404


def test_every_route_needs_the_token(start_frontend) -> None:
    mgmt = start_frontend(management_token="t", require_management_token=True)
    for path in ROUTES:
        resp = requests.post(mgmt.base + path.decode(), json={}, timeout=5)
        assert resp.status_code == 401, path


def test_loopback_needs_no_token_but_checks_one_that_is_sent(start_frontend) -> None:
    mgmt = start_frontend(management_token="s3cret")
    assert mgmt.post("add_app", APP).status_code == 200
    assert mgmt.post("get_all_applications", {},
                     headers={"Authorization": "Bearer s3cret"}).json() == ["a"]
    wrong = mgmt.post("get_all_applications", {}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "secrets.json" in wrong.json()["cause"]


@pytest.mark.parametrize("host", ["evil.example:1338", "192.0.2.9", "[fd00::1]:80"])
def test_loopback_refuses_foreign_host_names(start_frontend, host) -> None:
    """A page whose name was rebound to 127.0.0.1 sends its own name as Host."""
    mgmt = start_frontend(management_token="s3cret")
    resp = mgmt.post("get_all_applications", {}, headers={"Host": host})
    assert resp.status_code == 403
    assert "DNS rebinding" in resp.json()["cause"]
    for ok in ["localhost:1338", "127.0.0.1", "[::1]:1338", "LOCALHOST"]:
        assert mgmt.post("get_all_applications", {}, headers={"Host": ok}).status_code == 200
    with_token = {"Host": host, "Authorization": "Bearer s3cret"}
    assert mgmt.post("get_all_applications", {}, headers=with_token).status_code == 200


def test_off_loopback_needs_a_token_to_start(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    with pytest.raises(ValidationError, match="needs a management_token"):
        ManagementFrontend(ClusterConfig(management_host="0.0.0.0", store_url=url),
                           SQLiteStore.from_url(url))


# -- robustness ---------------------------------------------------------------------------
def _raw(mgmt, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", mgmt.frontend.port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize("payload", [
    b"\x00\x01\x02garbage\r\n\r\n",
    b"POST /admin/add_app HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /admin/add_app HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nConnection: close"
    b"\r\n\r\n\xff\xff\xff\xff\xff",
    b"POST /admin/add_app HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: close\r\n\r\n3\r\n{}}\r\n0\r\n\r\n",
    b"GET /admin/%ff%00 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
])
def test_garbage_never_crashes_the_server(mgmt, payload) -> None:
    answer = _raw(mgmt, payload)
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 404", b"HTTP/1.1 415")), answer
    assert requests.get(f"{mgmt.base}/admin/ping", timeout=5).text == "PONG"


def test_deeply_nested_json(mgmt) -> None:
    msg = mgmt.error("add_app", data=b"[" * 100_000 + b"]" * 100_000)
    assert msg.startswith("Error parsing JSON: JSON parse error:")
    assert requests.get(f"{mgmt.base}/admin/ping", timeout=5).text == "PONG"


def test_keep_alive_and_pipelining(mgmt) -> None:
    body = json.dumps({"verbose": False}).encode()
    request = (b"POST /admin/get_all_models HTTP/1.1\r\nHost: localhost\r\nContent-Length: "
               + str(len(body)).encode() + b"\r\n\r\n" + body)
    answer = _raw(mgmt, request * 3 + b"GET /admin/ping HTTP/1.1\r\nHost: localhost\r\n"
                  b"Connection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 OK") == 4
    assert answer.endswith(b"PONG")


def test_concurrent_duplicates_have_one_winner(mgmt) -> None:
    def add(i: int) -> int:
        with requests.Session() as session:
            return session.post(f"{mgmt.base}/admin/add_app", json=APP, timeout=10).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(add, range(32)))
    assert sorted(codes) == [200] + [400] * 31
    assert mgmt.ok("get_all_applications", {}) == ["a"]


def test_store_failures_are_500s_and_the_server_survives(start_frontend) -> None:
    with RedisServer() as redis:
        mgmt = start_frontend(store=RedisStore.from_url(redis.url))
        assert mgmt.post("add_app", APP).status_code == 200
        redis.stop()  # the store is now unreachable
        resp = mgmt.post("get_all_models", {"verbose": False})
        assert resp.status_code == 500
        assert resp.json() == {"error": "Internal Server Error", "cause": (
            "The management route get_all_models failed unexpectedly; see the server log")}
        assert requests.get(f"{mgmt.base}/admin/ping", timeout=5).text == "PONG"
        redis.start()  # back (empty: nothing is persisted), and so is the API
        assert mgmt.ok("get_all_applications", {}) == []


def test_closed_store_gives_a_clear_message(mgmt) -> None:
    mgmt.store.close()
    assert "is closed; open the store again" in mgmt.error("get_all_models", {})


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.sampled_from(["doubles", "ints", "m", "a", "1", "-1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6)


@st.composite
def _requests(draw):
    path = draw(st.sampled_from(sorted(ROUTES)))
    keys = [f.name for f in ROUTES[path].fields]
    body = draw(st.dictionaries(st.sampled_from(keys) if keys else st.text(max_size=3),
                                _json_values, max_size=len(keys) + 1)
                | _json_values)
    return path.decode(), body


def test_random_bodies_get_200_or_400(mgmt) -> None:
    @settings(max_examples=300, deadline=None, database=None)
    @given(_requests())
    def check(request) -> None:
        path, body = request
        resp = mgmt.session.post(mgmt.base + path, data=json.dumps(body), timeout=10,
                                 headers={"Content-Type": "application/json"})
        assert resp.status_code in (200, 400), (path, body, resp.text)

    check()
    assert requests.get(f"{mgmt.base}/admin/ping", timeout=5).text == "PONG"


def test_browsers_cannot_drive_it_cross_origin(mgmt) -> None:
    body = json.dumps({"name": "a"})
    simple = mgmt.session.post(f"{mgmt.base}/admin/delete_app", data=body,
                               headers={"Content-Type": "text/plain"}, timeout=10)
    assert simple.status_code == 415 and "application/json" in simple.json()["cause"]
    foreign = mgmt.post("get_all_models", {}, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and "evil.example" in foreign.json()["cause"]
    own = mgmt.post("get_all_models", {}, headers={"Origin": mgmt.base})
    assert own.status_code == 200
