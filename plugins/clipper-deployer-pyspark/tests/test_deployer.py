"""PySpark-specific behaviour: mllib bundles, and what is refused at deploy time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from clipper_deployer_pyspark import PySparkDeployer
from clipper_deployer_pyspark.deployer import MODEL_DIR

from clipper_core.deployers.api import Bundle, write_bundle
from clipper_core.exceptions import DeployError
from clipper_core.testing.conformance import replica_batch


def test_mllib_bundle_round_trip(tmp_path: Path, spark: Any, mllib_model: Any,
                                 mllib_predict: Any, mllib_inputs: list[list[float]]) -> None:
    bundle = write_bundle(PySparkDeployer(spark.sparkContext), tmp_path, "doubles",
                          mllib_predict, mllib_model)
    assert bundle.extra == {"model_class": "pyspark.mllib.classification.LogisticRegressionModel",
                            "api": "mllib"}
    assert (tmp_path / MODEL_DIR / "metadata").is_dir()
    predict = PySparkDeployer().load(Bundle.read(tmp_path))
    loaded = [json.loads(out) for out in predict(replica_batch("doubles", mllib_inputs))]
    direct = [json.loads(out) for out in mllib_predict(spark, mllib_model, mllib_inputs)]
    assert [o["class"] for o in loaded] == [o["class"] for o in direct]
    assert [o["margin"] for o in loaded] == pytest.approx([o["margin"] for o in direct])


def test_pipeline_bundle_records_the_ml_class(tmp_path: Path, pipeline_model: Any,
                                              pipeline_predict: Any) -> None:
    bundle = write_bundle(PySparkDeployer(), tmp_path, "strings", pipeline_predict,
                          pipeline_model)
    assert bundle.extra == {"model_class": "pyspark.ml.pipeline.PipelineModel", "api": "ml"}
    assert (tmp_path / MODEL_DIR / "stages").is_dir()


def test_unfitted_estimator_is_refused(tmp_path: Path, spark: Any,
                                       pipeline_predict: Any) -> None:
    from pyspark.ml.classification import LogisticRegression

    with pytest.raises(DeployError, match=r"unfitted estimator .*LogisticRegression.*\.fit"):
        write_bundle(PySparkDeployer(spark.sparkContext), tmp_path, "strings",
                     pipeline_predict, LogisticRegression())


def test_mllib_model_without_spark_context_is_refused(
        tmp_path: Path, mllib_model: Any, mllib_predict: Any) -> None:
    with pytest.raises(DeployError, match=r"needs sc, the SparkContext .* got NoneType"):
        write_bundle(PySparkDeployer(None), tmp_path, "doubles", mllib_predict, mllib_model)


def test_function_without_the_spark_argument_is_refused(
        tmp_path: Path, pipeline_model: Any) -> None:
    def predict(model: Any, inputs: Any) -> list[str]:
        return [str(x) for x in inputs]

    with pytest.raises(DeployError, match=r"func\(spark, model, inputs\)"):
        write_bundle(PySparkDeployer(), tmp_path, "strings", predict, pipeline_model)
