"""Spec §11.2 admin scenarios that need no Docker image, against the embedded default."""

from __future__ import annotations

import base64
import importlib.metadata
import json
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

from clipper_admin import ClipperConnection, ClipperException, UnconnectedException
from clipper_admin.deployers import python as python_deployer
from clipper_core.backends.local import runtime_distributions, runtime_site_dirs


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


def check_registered_models(conn, pairs):
    assert {(m["model_name"], m["model_version"])
            for m in conn.get_all_models(verbose=True)} == set(pairs)


def test_register_model_correct(conn):
    conn.register_model("m", "v1", "doubles")
    conn.register_model("m", "v2", "doubles")
    assert conn.get_model_info("m", "v1") is not None
    assert conn.get_model_info("m", "v2")["is_current_version"] is True
    assert conn.get_current_model_version("m") == "v2"


def test_register_application_correct(conn):
    conn.register_application("testapp", "doubles", "DEFAULT", 3000000)
    assert "testapp" in conn.get_all_apps()
    info = conn.get_app_info("testapp")
    assert info["input_type"] == "doubles"
    assert info["latency_slo_micros"] == 3000000


def test_app_info_for_nonexistent_app_returns_none(conn):
    assert conn.get_app_info("fake_app") is None


def test_duplicate_application_fails_with_server_message(conn):
    conn.register_application("dup-app", "doubles", "DEFAULT", 1000)
    with pytest.raises(ClipperException, match="Received error status code: 400") as info:
        conn.register_application("dup-app", "doubles", "DEFAULT", 1000)
    assert "already exists" in str(info.value)


def test_link_not_registered_model_to_app_fails(conn):
    conn.register_application("link-fail-app", "doubles", "DEFAULT", 3000000)
    with pytest.raises(ClipperException, match="No model with name"):
        conn.link_model_to_app("link-fail-app", "not-a-model")


def test_link_and_unlink(conn):
    conn.register_application("link-app", "doubles", "DEFAULT", 3000000)
    assert conn.get_linked_models("link-app") == []
    conn.register_model("link-model", "1", "doubles")
    conn.link_model_to_app("link-app", "link-model")
    assert conn.get_linked_models("link-app") == ["link-model"]
    conn.unlink_model_from_app("link-app", "link-model")
    assert conn.get_linked_models("link-app") == []


def test_set_num_replicas_for_external_model_fails(conn):
    conn.register_model("external", "1", "doubles")
    with pytest.raises(ClipperException, match="containerless model"):
        conn.set_num_replicas("external", 2)


def test_set_num_replicas_for_unknown_model_fails(conn):
    with pytest.raises(ClipperException, match="No versions of model nope"):
        conn.set_num_replicas("nope", 1)


def test_model_version_sets_correctly(conn):
    conn.register_model("versioned", "1", "doubles")
    conn.register_model("versioned", "2", "doubles")
    conn.set_model_version("versioned", "1")
    current = {m["model_version"]: m["is_current_version"]
               for m in conn.get_all_models(verbose=True) if m["model_name"] == "versioned"}
    assert current == {"1": True, "2": False}


def test_traffic_split_shadow_promote_and_rollback(conn):
    conn.register_model("rollout", "1", "doubles")
    conn.register_model("rollout", "2", "doubles")
    conn.set_model_version("rollout", "1")
    conn.set_traffic_split("rollout", {"1": 90, "2": 10})
    conn.set_shadow_versions("rollout", ["2"])
    assert conn.get_traffic("rollout") == {"current": "1", "split": {"1": 90, "2": 10},
                                           "shadows": ["2"], "previous": "1"}
    conn.promote_canary("rollout")
    assert conn.get_current_model_version("rollout") == "2"
    conn.rollback("rollout")
    assert conn.get_current_model_version("rollout") == "1"
    with pytest.raises(ClipperException, match="Unknown version '3'"):
        conn.set_traffic_split("rollout", {"3": 1})


def test_get_logs_creates_log_files(conn, tmp_path):
    paths = conn.get_clipper_logs(str(tmp_path / "logs"))
    assert paths
    assert all(Path(p).is_file() for p in paths)
    assert any("server" in p for p in paths)


def test_inspect_instance_returns_json_dict(conn):
    metrics = conn.inspect_instance()
    assert isinstance(metrics, dict)
    assert metrics


def test_addresses(conn):
    assert conn.get_query_addr() == conn.cm.get_query_addr()
    assert conn.get_metric_addr().endswith(str(conn.cm.clipper_query_port))


def test_unconnected_connection_raises(conn):
    fresh = ClipperConnection(conn.cm)
    with pytest.raises(UnconnectedException, match="No connection to Clipper cluster"):
        fresh.get_all_apps()
    with pytest.raises(UnconnectedException):
        fresh.deploy_model("m", "1", "doubles", "image")


@pytest.mark.parametrize(("name", "version"), [("Bad_Name", "1"), ("ok", "v.1"), ("ok", "-1")])
def test_deploy_and_build_validate_dns1123(conn, tmp_path, name, version):
    with pytest.raises(ClipperException, match="DNS-1123"):
        conn.deploy_model(name, version, "doubles", str(tmp_path))
    with pytest.raises(ClipperException, match="DNS-1123"):
        conn.build_model(name, version, str(tmp_path), "default")


def test_unlinked_app_returns_default_predictions(conn, helpers):
    conn.register_application("app4", "doubles", "DEFAULT", 3000000)
    pred = helpers.predict(conn, "app4", {"input": [99.3, 18.9, 67.2, 34.2]})
    assert pred["output"] == "DEFAULT"
    assert pred["default"] is True
    assert pred["default_explanation"] == "No connected models found for query"


def test_unregister_application_correct(conn):
    conn.register_application("gone-app", "doubles", "DEFAULT", 3000000)
    conn.unregister_application("gone-app")
    assert "gone-app" not in conn.get_all_apps()


def test_python_closure_queries_and_replica_scaling(conn, helpers):
    python_deployer.create_endpoint(conn, "py-closure-test", "doubles", feature_sum)
    assert conn.get_model_info("py-closure-test", 1) is not None
    assert conn.get_linked_models("py-closure-test") == ["py-closure-test"]
    pred = helpers.wait_for_prediction(conn, "py-closure-test", {"input": [1.0, 2.0, 3.5]})
    assert pred["output"] == 6.5
    batch = helpers.predict(conn, "py-closure-test",
                            {"input_batch": [[1.1, 2.2, 3.3], [4.4, 5.5, 6.6]]})
    func = lambda xs: [sum(x) for x in xs]  # noqa: E731
    assert [p["output"] for p in batch["batch_predictions"]] == conn.test_predict_function(
        {"input_batch": [[1.1, 2.2, 3.3], [4.4, 5.5, 6.6]]}, func, "doubles")

    conn.set_num_replicas("py-closure-test", 3)
    assert conn.get_num_replicas("py-closure-test") == 3
    conn.set_num_replicas("py-closure-test", 1, version=1)
    assert conn.get_num_replicas("py-closure-test", "1") == 1
    assert not helpers.predict(conn, "py-closure-test", {"input": [2.0]})["default"]

    conn.set_num_replicas("py-closure-test", 0)
    assert conn.get_num_replicas("py-closure-test") == 0

    def no_replica_answer():
        pred = helpers.predict(conn, "py-closure-test", {"input": [5.0, 1.0]})
        return pred if pred["default"] else None

    pred = helpers.wait_until(no_replica_answer, what="default output after scaling to zero")
    assert pred["default_explanation"] == "No connected models found for query"
    assert pred["output"] == "None"

    conn.set_num_replicas("py-closure-test", 1)
    assert helpers.wait_for_prediction(conn, "py-closure-test", {"input": [5.0, 1.0]})[
        "output"] == 6.0


def test_query_specific_model_version_and_set_model_version(conn, helpers):
    conn.register_application("versions-app", "doubles", "DEFAULT", 3000000)
    python_deployer.deploy_python_closure(conn, "testmodel", 1, "doubles",
                                          lambda xs: ["1" for _ in xs])
    conn.link_model_to_app("versions-app", "testmodel")
    helpers.wait_for_prediction(conn, "versions-app", {"input": [1.0]})
    python_deployer.deploy_python_closure(conn, "testmodel", 2, "doubles",
                                          lambda xs: ["2" for _ in xs])
    assert conn.get_current_model_version("testmodel") == "2"
    helpers.wait_until(lambda: helpers.predict(conn, "versions-app", {"input": [1.0]})[
        "output"] == 2, what="version 2 answering")
    assert helpers.predict(conn, "versions-app", {"input": [1.0], "version": "1"})["output"] == 1
    r = requests.post(f"http://{conn.get_query_addr()}/versions-app/predict",
                      json={"input": [1.0], "version": "skjfhkdjshfjksdhkjf"}, timeout=10)
    assert r.status_code != 200
    assert r.json()["cause"] == ("Requested version: skjfhkdjshfjksdhkjf does not exist for "
                                 "model: testmodel")

    conn.set_model_version("testmodel", 1, num_replicas=2)
    assert conn.get_num_replicas("testmodel", 1) == 2
    helpers.wait_until(lambda: helpers.predict(conn, "versions-app", {"input": [1.0]})[
        "output"] == 1, what="version 1 answering after set_model_version")

    conn.stop_inactive_model_versions(["testmodel"])
    versions = [m["model_version"] for m in conn.get_all_models(verbose=True)
                if m["model_name"] == "testmodel"]
    assert versions == ["1"]
    assert conn.get_num_replicas("testmodel", 2) == 0
    assert conn.get_num_replicas("testmodel", 1) == 2


def test_stop_models(start_cluster):
    conn = start_cluster("stop-models")
    for name in ("jimmypage", "robertplant"):
        for version in ("i", "ii"):
            python_deployer.deploy_python_closure(conn, name, version, "doubles", feature_sum)
    check_registered_models(conn, [(n, v) for n in ("jimmypage", "robertplant")
                                   for v in ("i", "ii")])
    assert sum(p["alive"] for p in conn.cm.replica_processes()) == 4

    conn.stop_models(["jimmypage"])
    check_registered_models(conn, [("robertplant", "i"), ("robertplant", "ii")])
    assert conn.cm.get_num_replicas("jimmypage", "i") == 0
    assert len(conn.cm.replica_processes()) == 2

    conn.stop_versioned_models({"robertplant": ["ii"]})
    check_registered_models(conn, [("robertplant", "i")])
    assert conn.cm.get_num_replicas("robertplant", "i") == 1

    ClipperConnection(conn.cm).stop_all_model_containers()  # works unconnected
    assert conn.cm.replica_processes() == []
    check_registered_models(conn, [("robertplant", "i")])

    conn.set_num_replicas("robertplant", 2, "i")
    conn.stop_all_model_containers()
    check_registered_models(conn, [])
    assert conn.cm.replica_processes() == []


def test_test_predict_function_checks_types(conn):
    func = lambda xs: [len(x) for x in xs]  # noqa: E731
    assert conn.test_predict_function({"input": [1, 2, 3]}, func, "integers") == [3]
    assert conn.test_predict_function({"input": [1, 2]}, func, "doubles") == "Invalid input type"
    assert conn.test_predict_function({"input": "abc"}, func, "strings") == [3]
    data = base64.b64encode(b"\x01\x02").decode()
    assert conn.test_predict_function({"input_batch": [data, data]}, func, "bytes") == [2, 2]
    assert conn.test_predict_function({"nope": 1}, func, "doubles") == (
        "Invalid input type or JSON key")


def _write_wheel(directory: Path) -> Path:
    """A minimal pure-Python wheel of module ``h3probe`` (pip installs it offline)."""
    wheel = directory / "h3probe-1.0-py3-none-any.whl"
    files = {
        "h3probe.py": "ANSWER = '42'\n",
        "h3probe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: h3probe\nVersion: 1.0\n",
        "h3probe-1.0.dist-info/WHEEL": ("Wheel-Version: 1.0\nGenerator: test\n"
                                        "Root-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr("h3probe-1.0.dist-info/RECORD",
                    "".join(f"{n},,\n" for n in files) + "h3probe-1.0.dist-info/RECORD,,\n")
    return wheel


def test_pkgs_to_install_go_into_the_models_venv(conn, helpers, tmp_path):
    wheel = _write_wheel(tmp_path)

    def answer(xs):
        import h3probe

        return [h3probe.ANSWER for _ in xs]

    python_deployer.create_endpoint(conn, "pkg-model", "doubles", answer,
                                    pkgs_to_install=[str(wheel)])
    venv_python = conn.cm.cluster_dir / "models" / "pkg-model" / "1" / ".venv" / "bin" / "python"
    assert venv_python.exists()
    assert helpers.wait_for_prediction(conn, "pkg-model", {"input": [1.0]})["output"] == 42
    with pytest.raises(ModuleNotFoundError):
        import h3probe  # noqa: F401  (only the model's venv has it)


#: Run by a model venv's python: its sys.path and where each named distribution comes from.
_ENVIRONMENT_PROBE = """
import importlib.metadata, json, sys
import clipper_core.runtime, h3probe
names = json.loads(sys.argv[1])
print(json.dumps({"path": sys.path, "dists": {
    n: str(importlib.metadata.distribution(n).locate_file("")) for n in names}}))
"""


def test_a_models_venv_sees_the_runtime_environment_not_the_base_interpreter(conn, tmp_path):
    """The venv of pkgs_to_install takes clipper-core's requirements (from its metadata) from
    where this interpreter takes them, and never sees the base interpreter's site-packages
    (which, on a fresh machine, hold none of them)."""
    (tmp_path / "bundle").mkdir()
    model_dir = Path(conn.cm.build_model("venv-probe", "1", str(tmp_path / "bundle"), "default",
                                         pkgs_to_install=[str(_write_wheel(tmp_path))]))
    names = runtime_distributions()
    assert {"clipper-core", "pyzmq", "numpy", "cloudpickle"} <= set(names)
    proc = subprocess.run([str(model_dir / ".venv" / "bin" / "python"), "-c", _ENVIRONMENT_PROBE,
                           json.dumps(names)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)

    def where(path: str) -> Path:
        return Path(path).resolve()

    venv = where(str(model_dir / ".venv"))
    here = {n: where(str(importlib.metadata.distribution(n).locate_file(""))) for n in names}
    there = {n: where(p) for n, p in seen["dists"].items()}
    # pip's own (setuptools) may come with the venv; everything else comes from here.
    outside = {n for n, p in there.items() if not p.is_relative_to(venv)}
    assert set(names) - outside <= {"pip", "setuptools"}
    assert {n: there[n] for n in outside} == {n: here[n] for n in outside}
    base_site = {where(p) for p in site.getsitepackages([sys.base_prefix])}
    leaked = (base_site - set(runtime_site_dirs())) & {where(p) for p in seen["path"] if p}
    assert not leaked, f"the model venv sees the base interpreter's site-packages {leaked}"
