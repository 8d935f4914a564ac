"""The ``clipper`` command, run as a real process: output, exit codes, quickstart."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def cli(tmp_path_factory, helpers):
    """Run ``clipper <command> <cluster options>``; the cluster is stopped at the end."""
    root = tmp_path_factory.mktemp("cli")
    options = ["--cluster-name", "cli-test", "--cluster-dir", str(root / "cli-test"),
               "--query-port", str(helpers.unused_port()),
               "--management-port", str(helpers.unused_port()),
               "--rpc-port", str(helpers.unused_port())]

    def run(*args: str, cluster: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "clipper_core.cli", *args, *(options if cluster else ())]
        return subprocess.run(argv, capture_output=True, text=True, timeout=240)

    yield run
    run("stop", "--kill")


def test_quickstart_twice_then_inspect_and_stop(cli, tmp_path):
    first = cli("quickstart")
    assert first.returncode == 0, first.stderr
    assert "curl -X POST" in first.stdout
    assert "hello-world/predict" in first.stdout
    # the CLI process has exited; its cluster and replica keep serving
    second = cli("quickstart")
    assert second.returncode == 0, second.stderr

    pred = cli("predict", "hello-world", "[1.1, 2.2, 3.3]")
    assert pred.returncode == 0, pred.stderr
    answer = json.loads(pred.stdout)
    assert answer["default"] is False
    assert answer["output"] == pytest.approx(6.6)

    apps = cli("apps")
    assert apps.returncode == 0
    assert apps.stdout.splitlines()[0].split()[:3] == ["APPLICATION", "INPUT", "TYPE"]
    assert "hello-world  doubles" in apps.stdout
    assert "sum-model" in apps.stdout

    models = cli("models")
    rows = [line.split() for line in models.stdout.splitlines()[1:]]
    assert rows == [["sum-model", "1", "doubles", "*", "1", rows[0][-1]]]

    replicas = cli("replicas")
    assert replicas.returncode == 0
    assert "running" in replicas.stdout
    assert "1 replica(s) connected" in replicas.stdout

    status = cli("status")
    assert status.returncode == 0
    assert "applications:    1" in status.stdout

    logs = cli("logs", "--dir", str(tmp_path))
    assert logs.returncode == 0
    assert any(line.endswith("server.log") for line in logs.stdout.splitlines())

    assert cli("start").returncode == 1

    stop = cli("stop")
    assert stop.returncode == 0, stop.stderr
    status = cli("status")
    assert status.returncode == 1
    assert "not running" in status.stderr


def test_errors_and_usage(cli):
    bad = cli("predict", "hello-world", "[1.0")
    assert bad.returncode == 1
    assert bad.stderr.startswith("clipper: error:")
    assert "Traceback" not in bad.stderr

    stopped = cli("predict", "hello-world", "[1.0]")
    assert stopped.returncode == 1
    assert "No cluster named cli-test" in stopped.stderr

    usage = cli("frobnicate", cluster=False)
    assert usage.returncode == 2
    assert cli("predict", cluster=False).returncode == 2


def test_plugins_lists_the_built_ins(cli):
    out = cli("plugins", cluster=False)
    assert out.returncode == 0
    assert "backend local" in out.stdout
    assert "deployer python" in out.stdout


def test_deploy_a_file_inspect_scale_and_json(cli, tmp_path):
    model = tmp_path / "doubler.py"
    model.write_text("def predict(xs):\n    return [str(2 * sum(x)) for x in xs]\n")
    assert cli("start").returncode == 0
    try:
        deployed = cli("deploy", f"{model}:predict", "--name", "doubler", "--app", "twice",
                       "--json")
        assert deployed.returncode == 0, deployed.stderr
        info = json.loads(deployed.stdout)
        assert info["predict_url"].endswith("/twice/predict")
        assert "replicas of doubler:1 connected" in deployed.stderr

        pred = json.loads(cli("predict", "twice", "[1.0, 2.0]").stdout)
        assert pred == {"query_id": pred["query_id"], "output": 6.0, "default": False}

        apps = json.loads(cli("apps", "--json").stdout)
        assert [(a["name"], a["linked_models"]) for a in apps] == [("twice", ["doubler"])]
        models = json.loads(cli("models", "--json").stdout)
        assert [(m["model_name"], m["num_replicas"]) for m in models] == [("doubler", 1)]

        metrics = json.loads(cli("metrics", "--json").stdout)
        assert metrics["apps"]["twice"]["num_predictions.count"] >= 1
        assert "doubler:1" in metrics["models"]
        text = cli("metrics").stdout
        assert text.splitlines()[0].split()[:2] == ["APPLICATION", "PREDICTIONS"]
        top = cli("top", "--iterations", "1", "--interval", "0.2")
        assert top.returncode == 0, top.stderr
        assert "PRED/S" in top.stdout
        assert "doubler:1" in top.stdout

        scaled = cli("scale", "doubler", "2")
        assert scaled.returncode == 0, scaled.stderr
        replicas = json.loads(cli("replicas", "--json").stdout)
        assert sum(r["model_name"] == "doubler" for r in replicas["connected"]) == 2
        assert cli("set-version", "doubler", "1").returncode == 0

        bad = cli("deploy", str(model), "--name", "x")
        assert bad.returncode == 1
        assert "is not FILE.py:FUNCTION" in bad.stderr
        missing = cli("deploy", f"{model}:nope", "--name", "x")
        assert "has no function 'nope' (functions: predict)" in missing.stderr
        option = cli("apps", "--option", "bogus=1")
        assert option.returncode == 1
        assert "The local backend has no option bogus" in option.stderr
    finally:
        assert cli("stop").returncode == 0


def test_policy_traffic_shadow_promote_rollback(cli, tmp_path):
    for version, factor in (("1", 1), ("2", 10)):
        (tmp_path / f"v{version}.py").write_text(
            f"def predict(xs):\n    return [str({factor} * sum(x)) for x in xs]\n")
    assert cli("start").returncode == 0
    try:
        for version in ("1", "2"):
            deployed = cli("deploy", f"{tmp_path}/v{version}.py:predict", "--name", "m",
                           "--version", version, "--app", "a")
            assert deployed.returncode == 0, deployed.stderr
        shown = cli("traffic", "m")
        assert "current version 2" in shown.stdout
        assert "none (all queries to the current version)" in shown.stdout

        split = cli("traffic", "m", "1=100", "2=0")
        assert split.returncode == 0, split.stderr
        assert "split:    1=100 2=0" in split.stdout
        assert json.loads(cli("predict", "a", "[1.0, 2.0]").stdout)["output"] == 3.0
        shadow = json.loads(cli("shadow", "m", "1", "--json").stdout)
        assert shadow == {"current": "2", "split": {"1": 100, "2": 0}, "shadows": ["1"],
                          "previous": "2"}
        promoted = cli("promote", "m")
        assert promoted.returncode == 0, promoted.stderr
        assert "current version 1" in promoted.stdout
        rolled = json.loads(cli("rollback", "m", "--json").stdout)
        assert (rolled["current"], rolled["split"], rolled["shadows"]) == ("2", {}, [])
        assert json.loads(cli("predict", "a", "[1.0, 2.0]").stdout)["output"] == 30.0

        bad = cli("traffic", "m", "1=most")
        assert bad.returncode == 1
        assert "weight 1='most' is not a number (e.g. 1=95 2=5)" in bad.stderr
        unknown = cli("traffic", "m", "7=1")
        assert unknown.returncode == 1
        assert "Unknown version '7' of model 'm'" in unknown.stderr

        assert "policy default" in cli("policy", "a").stdout
        chosen = cli("policy", "a", "exp3", "-p", "gamma=0.2")
        assert chosen.returncode == 0, chosen.stderr
        assert "policy exp3" in chosen.stdout
        assert "parameters: gamma=0.2" in chosen.stdout
        assert json.loads(cli("policy", "a", "--json").stdout)["params"] == {"gamma": 0.2}
        wrong = cli("policy", "a", "exp3", "-p", "gamma=7")
        assert wrong.returncode == 1
        assert "gamma must be in (0, 1], not 7" in wrong.stderr
    finally:
        assert cli("stop").returncode == 0
