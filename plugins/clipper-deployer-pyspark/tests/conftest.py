"""One SparkSession for the whole test run and small models trained on generated data.

Spark takes tens of seconds to start on a small machine, so every test shares the session (it
has the configuration a replica uses) and the models are trained once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from clipper_deployer_pyspark.deployer import start_spark_session

WORDS = ["spark", "clipper", "model", "serving", "latency", "hadoop", "batch", "query"]


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    session = start_spark_session()
    yield session
    session.stop()


@pytest.fixture(scope="session")
def pipeline_model(spark: Any) -> Any:
    """A fitted pyspark.ml Pipeline (Tokenizer, HashingTF, LogisticRegression) on generated text."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import HashingTF, Tokenizer

    rng = np.random.default_rng(1)
    rows = []
    for _ in range(40):
        words = list(rng.choice(WORDS, size=4))
        rows.append((" ".join(words), float("spark" in words)))
    train = spark.createDataFrame(rows, ["text", "label"])
    pipeline = Pipeline(stages=[
        Tokenizer(inputCol="text", outputCol="words"),
        HashingTF(inputCol="words", outputCol="features", numFeatures=32),
        LogisticRegression(maxIter=10, regParam=0.01),
    ])
    return pipeline.fit(train)


@pytest.fixture(scope="session")
def pipeline_predict() -> Any:
    """``func(spark, model, inputs)`` for the pipeline; inputs are str or bytes texts."""

    def predict(spark: Any, model: Any, inputs: Any) -> list[str]:
        texts = [x.decode() if isinstance(x, bytes) else x for x in inputs]
        df = spark.createDataFrame([(t,) for t in texts], ["text"])
        rows = model.transform(df).select("prediction", "probability").collect()
        return [json.dumps({"prediction": r.prediction,
                            "probability": r.probability.toArray().tolist()}) for r in rows]

    return predict


@pytest.fixture(scope="session")
def mllib_model(spark: Any) -> Any:
    """A pyspark.mllib logistic regression (LBFGS) on generated points."""
    from pyspark.mllib.classification import LogisticRegressionWithLBFGS
    from pyspark.mllib.regression import LabeledPoint

    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 3))
    points = [LabeledPoint(float(row[0] - row[2] > 0), row.tolist()) for row in x]
    return LogisticRegressionWithLBFGS.train(spark.sparkContext.parallelize(points, 1),
                                             iterations=20)


@pytest.fixture(scope="session")
def mllib_predict() -> Any:
    """``func(spark, model, inputs)`` for the mllib model: its class and its margin."""

    def predict(spark: Any, model: Any, inputs: Any) -> list[str]:
        return [json.dumps({"class": int(model.predict(x)),
                            "margin": float(model.weights.dot(x) + model.intercept)})
                for x in inputs]

    return predict


@pytest.fixture(scope="session")
def mllib_inputs() -> list[list[float]]:
    return np.random.default_rng(3).normal(size=(4, 3)).round(3).tolist()
