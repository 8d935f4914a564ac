"""The deployer conformance suite with a Keras model, plus a TF1 Session over REST."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from clipper_deployer_tensorflow import (
    TensorFlowDeployer,
    create_endpoint,
    deploy_tensorflow_model,
)

from clipper_core.testing import DeployerEndToEnd, LocalCluster, assert_outputs_match, rest_input


class TestTensorFlowConformance(DeployerEndToEnd):
    deployer_class = TensorFlowDeployer
    input_type = "doubles"
    model_argument = "tf_sess_or_saved_model_path"
    expected_model_hint = "tf.compat.v1.Session"

    @pytest.fixture
    def model(self, keras_model: keras.Model) -> keras.Model:
        return keras_model

    @pytest.fixture
    def func(self, keras_func: Callable[..., Any]) -> Callable[..., Any]:
        return keras_func

    @pytest.fixture
    def inputs(self, sample_inputs: list[list[float]]) -> list[list[float]]:
        return sample_inputs

    @pytest.fixture
    def expected_outputs(self, keras_probabilities: list[list[float]]) -> list[Any]:
        return keras_probabilities

    @pytest.fixture
    def deploy_function(self) -> Callable[..., None]:
        return deploy_tensorflow_model

    def test_tf1_session_over_rest_with_integers(
            self, cluster: LocalCluster, tf1_session: tf.compat.v1.Session,
            session_class_func: Callable[..., Any]) -> None:
        """The original's scenario: a trained TF1 Session, integer inputs, create_endpoint."""
        inputs = [[3, -1, 2, 0], [-4, 2, 0, 1], [1, 1, 1, 1], [-1, 0, -2, 3]]
        expected = tf1_session.run("predict_class:0", feed_dict={
            "pixels:0": np.asarray(inputs, dtype=np.float32)}).tolist()
        assert len(set(expected)) == 2, "the inputs should cover both classes"
        create_endpoint(cluster.conn, "tf1-session", "integers", session_class_func,
                        tf1_session, slo_micros=10_000_000)
        singles = [rest_input("integers", x) for x in inputs]
        first = cluster.wait_for_model("tf1-session", {"input": singles[0]}, 240)
        answers = [first] + [cluster.predict("tf1-session", {"input": x}) for x in singles[1:]]
        batch = cluster.predict("tf1-session", {"input_batch": singles})["batch_predictions"]
        assert not any(a["default"] for a in [*answers, *batch])
        assert_outputs_match([a["output"] for a in answers], expected)
        assert_outputs_match([a["output"] for a in batch], expected)
        cluster.conn.stop_models(["tf1-session"])

    def test_seeds_import_path(self) -> None:
        from clipper_admin.deployers import tensorflow as seeds_tf

        assert seeds_tf.deploy_tensorflow_model is deploy_tensorflow_model
        assert seeds_tf.create_endpoint is create_endpoint
