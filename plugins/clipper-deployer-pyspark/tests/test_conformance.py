"""The shared deployer conformance suite, end to end, for a pyspark.ml pipeline; plus mllib."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from clipper_deployer_pyspark import PySparkDeployer, create_endpoint, deploy_pyspark_model

from clipper_core.testing.conformance import DeployerEndToEnd, assert_outputs_match, rest_input


class TestPipelineConformance(DeployerEndToEnd):
    deployer_class = PySparkDeployer
    input_type = "strings"
    model_argument = "pyspark_model"
    expected_model_hint = "pyspark.ml"
    fresh_process_timeout_s = 600.0
    replica_start_timeout_s = 600.0

    @pytest.fixture
    def model(self, pipeline_model: Any) -> Any:
        return pipeline_model

    @pytest.fixture
    def deployer(self, spark: Any) -> PySparkDeployer:
        return PySparkDeployer(spark.sparkContext)

    @pytest.fixture
    def deploy_function(self) -> Any:
        return deploy_pyspark_model

    @pytest.fixture
    def deploy_kwargs(self, model: Any, spark: Any) -> dict[str, Any]:
        return {"pyspark_model": model, "sc": spark.sparkContext}

    @pytest.fixture
    def func(self, pipeline_predict: Any) -> Any:
        return pipeline_predict

    @pytest.fixture
    def inputs(self) -> list[str]:
        return ["spark model serving", "hadoop batch query", "clipper spark latency"]

    @pytest.fixture
    def expected_outputs(self, spark: Any, model: Any, inputs: list[str]) -> list[Any]:
        df = spark.createDataFrame([(t,) for t in inputs], ["text"])
        rows = model.transform(df).select("prediction", "probability").collect()
        return [{"prediction": r.prediction, "probability": r.probability.toArray().tolist()}
                for r in rows]

    def test_mllib_model_through_create_endpoint(
            self, cluster: Any, spark: Any, mllib_model: Any, mllib_predict: Any,
            mllib_inputs: list[list[float]]) -> None:
        """A pyspark.mllib model (saved with sc) served next to the pipeline, same cluster."""
        expected = [json.loads(out) for out in mllib_predict(spark, mllib_model, mllib_inputs)]
        assert {e["class"] for e in expected} <= {0, 1}
        create_endpoint(cluster.conn, "mllib-endpoint", "doubles", mllib_predict, mllib_model,
                        spark.sparkContext, default_output="-1", slo_micros=self.slo_micros)
        assert cluster.conn.get_linked_models("mllib-endpoint") == ["mllib-endpoint"]
        singles = [rest_input("doubles", x) for x in mllib_inputs]
        first = cluster.wait_for_model("mllib-endpoint", {"input": singles[0]},
                                       self.replica_start_timeout_s)
        batch = cluster.predict("mllib-endpoint", {"input_batch": singles})["batch_predictions"]
        assert not any(b["default"] for b in batch), batch
        assert_outputs_match([first["output"]] + [b["output"] for b in batch],
                             expected[:1] + expected)


def test_deploy_function_signatures_match_the_seeds() -> None:
    params = inspect.signature(deploy_pyspark_model).parameters
    assert list(params) == [
        "clipper_conn", "name", "version", "input_type", "func", "pyspark_model", "sc",
        "base_image", "labels", "registry", "num_replicas", "batch_size", "pkgs_to_install"]
    endpoint = inspect.signature(create_endpoint).parameters
    assert list(endpoint) == [
        "clipper_conn", "name", "input_type", "func", "pyspark_model", "sc", "default_output",
        "version", "slo_micros", "labels", "registry", "base_image", "num_replicas",
        "batch_size", "pkgs_to_install"]
    assert (endpoint["default_output"].default, endpoint["version"].default,
            endpoint["slo_micros"].default) == ("None", 1, 3000000)
