"""R models on the embedded default: deployed from Python (an .rds) and from R itself."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from clipper_deployer_r import create_endpoint, deploy_r_model

from clipper_core.testing import LocalCluster, assert_outputs_match, parse_output, rest_input

SLO = 20_000_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), "r-local")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_lm_captured_from_the_global_environment(cluster: LocalCluster, save_r_model) -> None:
    rds = save_r_model("""
        train <- data.frame(x = c(1, 2, 3, 4, 5), y = c(3.1, 4.9, 7.2, 8.8, 11.1))
        fit <- lm(y ~ x, data = train)
        f <- function(inputs) predict(fit, data.frame(x = vapply(inputs, function(v) v[1], 0)))
        sample <- 1
    """)
    create_endpoint(cluster.conn, "r-lm", rds, slo_micros=SLO)
    slope, intercept = np.polyfit([1, 2, 3, 4, 5], [3.1, 4.9, 7.2, 8.8, 11.1], 1)
    first = cluster.wait_for_model("r-lm", {"input": [0.0]}, 120)
    batch = cluster.predict("r-lm", {"input_batch": [[1.0], [10.0]]})["batch_predictions"]
    assert not any(a["default"] for a in batch), batch
    assert_outputs_match([first["output"], *(a["output"] for a in batch)],
                         [intercept, intercept + slope, intercept + 10 * slope])


def test_model_using_a_package(cluster: LocalCluster, save_r_model) -> None:
    rds = save_r_model("""
        f <- function(inputs) vapply(inputs, function(v) stats::median(v) + stats::sd(v), 0)
        sample <- c(1, 2, 3)
    """)
    create_endpoint(cluster.conn, "r-stats", rds, slo_micros=SLO)
    answer = cluster.wait_for_model("r-stats", {"input": [1.0, 2.0, 4.0, 10.0]}, 120)
    # median 3, sample sd of (1, 2, 4, 10) = 4.0311...
    assert_outputs_match([answer["output"]], [3 + 4.031128874149275])


def test_a_failing_model_answers_the_default_and_keeps_serving(
        cluster: LocalCluster, save_r_model) -> None:
    rds = save_r_model("""
        f <- function(inputs) vapply(inputs, function(v) {
            if (any(v < 0)) stop("negative input ", v[1])
            sum(v)
        }, 0)
        sample <- 1
    """)
    create_endpoint(cluster.conn, "r-fail", rds, default_output="fallback", slo_micros=SLO)
    assert cluster.wait_for_model("r-fail", {"input": [2.0]}, 120)["output"] == 2
    failed = cluster.predict("r-fail", {"input": [-3.0]})
    assert failed["default"] is True
    assert failed["output"] == "fallback"
    assert "negative input -3" in failed["default_explanation"]
    assert cluster.predict("r-fail", {"input": [4.0, 1.0]}) == {
        "query_id": pytest.approx(0, abs=10**9), "output": 5, "default": False}


def test_a_long_batch_does_not_get_the_replica_dropped(
        cluster: LocalCluster, save_r_model) -> None:
    """10 inputs x 0.6 s = 6 s in one batch, twice the frontend's 3 s replica timeout."""
    rds = save_r_model("""
        f <- function(inputs) vapply(inputs, function(v) { Sys.sleep(0.6); v[1] * 2 }, 0)
        sample <- 1
    """)
    create_endpoint(cluster.conn, "r-slow", rds, slo_micros=SLO)
    cluster.wait_for_model("r-slow", {"input": [0.5]}, 120)
    values = [float(i) for i in range(10)]
    batch = cluster.predict("r-slow", {"input_batch": [[v] for v in values]},
                            timeout=60)["batch_predictions"]
    assert not any(a["default"] for a in batch), batch
    assert_outputs_match([a["output"] for a in batch], [2 * v for v in values])
    assert "r-slow:1#0 dropped" not in (cluster.manager.server_log).read_text()
    assert "reconnecting" not in (cluster.manager.logs_dir / "replica-r-slow-1-0.log").read_text()
    assert cluster.predict("r-slow", {"input": [7.0]})["output"] == 14


#: One R model per input type: (app, input type, sample input, function, queries).
R_CASES = r"""
cases <- list(
  list(app = "rr-doubles", type = "doubles", sample = c(1.5, 2),
       f = function(inputs) vapply(inputs, function(x) sum(x^2), 0),
       queries = list(c(1, 2, 3), 0.5)),
  list(app = "rr-floats", type = "floats", sample = c(1.5, 2),
       f = function(inputs) lapply(inputs, function(x) rev(x) * 2),
       queries = list(c(1.5, -2.25), 0.5)),
  list(app = "rr-ints", type = "ints", sample = 1L,
       f = function(inputs) vapply(inputs, function(x) max(x) - min(x), 0L),
       queries = list(c(4L, -7L, 9L), 3L)),
  list(app = "rr-bytes", type = "bytes", sample = as.raw(1:3),
       f = function(inputs) vapply(inputs, function(x) sum(as.integer(x)), 0),
       queries = list(as.raw(c(1, 200, 255)), as.raw(7))),
  list(app = "rr-strings", type = "strings", sample = "a",
       f = function(inputs) toupper(unlist(inputs)),
       queries = list("hello", "\u00e9t\u00e9")),
  list(app = "rr-frames", type = "strings", sample = data.frame(x = 1, y = 2),
       f = function(inputs) vapply(inputs, function(d) sum(d$x * d$y), 0),
       queries = list(data.frame(x = c(1, 2), y = c(3, 4)), data.frame(x = 5, y = 6)))
)
args <- commandArgs(TRUE)
conn <- Rclipper::clipper_connection(args[1], cluster_dir = args[2])
for (case in cases) {
  Rclipper::register_application(conn, case$app, case$type, "none", 20000000L)
  Rclipper::deploy_r_function(conn, case$app, 1, case$f, case$sample, input_type = case$type)
  Rclipper::link_model_to_app(conn, case$app, case$app)
}
for (case in cases) {
  for (query in case$queries) {
    deadline <- Sys.time() + 120
    repeat {
      answer <- predict(conn, case$app, query, input_type = case$type)
      if (!isTRUE(answer$default) || Sys.time() > deadline) break
      Sys.sleep(0.5)
    }
    expected <- Rclipper:::encode_outputs(case$f(list(query)), 1L)
    cat(jsonlite::toJSON(list(app = case$app, expected = expected, answer = answer),
                         auto_unbox = TRUE, digits = NA), "\n")
  }
}
"""


def test_deploy_r_function_from_r_for_every_input_type(cluster: LocalCluster, run_r) -> None:
    proc = run_r(R_CASES, cluster.manager.cluster_name, str(cluster.manager.cluster_dir))
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert {line["app"] for line in lines} == {
        "rr-doubles", "rr-floats", "rr-ints", "rr-bytes", "rr-strings", "rr-frames"}
    assert len(lines) == 12
    for line in lines:
        answer = line["answer"]
        assert answer["default"] is False, line
        assert_outputs_match([answer["output"]], [parse_output(line["expected"])])
    # the same applications answer Python clients too
    python_answer = cluster.predict("rr-ints", {"input": rest_input("ints", [1, 5, 2])})
    assert python_answer["output"] == 4


def test_rclipper_and_python_see_the_same_cluster(cluster: LocalCluster, run_r) -> None:
    proc = run_r("conn <- Rclipper::clipper_connection(commandArgs(TRUE)[1], "
                 "cluster_dir = commandArgs(TRUE)[2]); print(conn)",
                 cluster.manager.cluster_name, str(cluster.manager.cluster_dir))
    assert cluster.conn.cm.get_query_addr() in proc.stdout
    assert cluster.conn.cm.get_admin_addr() in proc.stdout
    assert sys.executable  # the bridge ran with this interpreter (CLIPPER_PYTHON)


def test_deploy_r_model_checks_the_file(cluster: LocalCluster, tmp_path: Path) -> None:
    from clipper_core.exceptions import DeployError

    with pytest.raises(DeployError, match="Rclipper::save_model"):
        deploy_r_model(cluster.conn, "r-missing", 1, tmp_path / "nothing.rds")
