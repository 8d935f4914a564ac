"""Every kind of model deploy_tensorflow_model accepts, and what fails at deploy time."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from clipper_deployer_tensorflow import TensorFlowDeployer, deploy_tensorflow_model

from clipper_core.deployers.api import Bundle, write_bundle
from clipper_core.exceptions import DeployError
from clipper_core.testing import assert_outputs_match, replica_batch

CLASS_INPUTS = [[3.0, -1.0, 2.0, 0.0], [-4.0, 2.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]


def round_trip(tmp_path: Path, func: Callable[..., Any], model: Any,
               inputs: list[list[float]]) -> tuple[str, list[Any]]:
    """Write a bundle, load it as a replica does, predict; return (format, outputs)."""
    bundle = write_bundle(TensorFlowDeployer(), tmp_path / "bundle", "doubles", func, model)
    predict = TensorFlowDeployer().load(Bundle.read(bundle.path))
    return bundle.extra["format"], list(predict(replica_batch("doubles", inputs)))


def session_classes(sess: tf.compat.v1.Session, inputs: list[list[float]]) -> list[int]:
    return sess.run("predict_class:0", feed_dict={
        "pixels:0": np.asarray(inputs, dtype=np.float32)}).tolist()


def test_keras_file(tmp_path: Path, keras_model: keras.Model, keras_func: Callable[..., Any],
                    sample_inputs: list[list[float]],
                    keras_probabilities: list[list[float]]) -> None:
    path = tmp_path / "classifier.keras"
    keras_model.save(path)
    kind, outputs = round_trip(tmp_path, keras_func, str(path), sample_inputs)
    assert kind == "keras"
    assert_outputs_match(outputs, keras_probabilities)


def test_keras_export_saved_model_directory(tmp_path: Path, keras_model: keras.Model,
                                            sample_inputs: list[list[float]],
                                            keras_probabilities: list[list[float]]) -> None:
    keras_model.export(str(tmp_path / "exported"), verbose=False)

    def serve(model: Any, inputs: Any) -> list[str]:
        x = tf.constant(np.stack(list(inputs)), dtype=tf.float32)
        return [json.dumps(row) for row in model.serve(x).numpy().tolist()]

    kind, outputs = round_trip(tmp_path, serve, tmp_path / "exported", sample_inputs)
    assert kind == "saved_model"
    assert_outputs_match(outputs, keras_probabilities)


def test_tf_module_object(tmp_path: Path, affine_module: tf.Module,
                          sample_inputs: list[list[float]]) -> None:
    expected = affine_module(tf.constant(sample_inputs, dtype=tf.float64)).numpy().tolist()

    def call(module: Any, inputs: Any) -> list[str]:
        return [json.dumps(row) for row in module(np.stack(list(inputs))).numpy().tolist()]

    kind, outputs = round_trip(tmp_path, call, affine_module, sample_inputs)
    assert kind == "saved_model"
    assert_outputs_match(outputs, expected)


def test_tf1_session_object(tmp_path: Path, tf1_session: tf.compat.v1.Session,
                            session_class_func: Callable[..., Any]) -> None:
    kind, outputs = round_trip(tmp_path, session_class_func, tf1_session, CLASS_INPUTS)
    assert kind == "checkpoint"
    assert outputs == session_classes(tf1_session, CLASS_INPUTS)


def test_tf1_checkpoint_directory(tmp_path: Path, tf1_session: tf.compat.v1.Session,
                                  session_class_func: Callable[..., Any]) -> None:
    with tf1_session.graph.as_default():
        tf.compat.v1.train.Saver().save(tf1_session, str(tmp_path / "ckpt" / "trained"))
    kind, outputs = round_trip(tmp_path, session_class_func, tmp_path / "ckpt", CLASS_INPUTS)
    assert kind == "checkpoint"
    assert outputs == session_classes(tf1_session, CLASS_INPUTS)


def test_tf1_saved_model_directory(tmp_path: Path, tf1_session: tf.compat.v1.Session) -> None:
    graph = tf1_session.graph
    with graph.as_default():
        tf.compat.v1.saved_model.simple_save(
            tf1_session, str(tmp_path / "tf1"),
            inputs={"pixels": graph.get_tensor_by_name("pixels:0")},
            outputs={"probabilities": graph.get_tensor_by_name("probabilities:0")})

    def probabilities(sess: Any, inputs: Any) -> list[str]:
        x = np.asarray(np.stack(list(inputs)), dtype=np.float32)
        rows = sess.run("probabilities:0", feed_dict={"pixels:0": x}).tolist()
        return [json.dumps(row) for row in rows]

    kind, outputs = round_trip(tmp_path, probabilities, tmp_path / "tf1", CLASS_INPUTS)
    assert kind == "saved_model_v1"
    expected = tf1_session.run("probabilities:0", feed_dict={
        "pixels:0": np.asarray(CLASS_INPUTS, dtype=np.float32)})
    assert_outputs_match(outputs, expected.tolist())


def test_paths_that_hold_no_model(tmp_path: Path, keras_func: Callable[..., Any]) -> None:
    with pytest.raises(DeployError, match="does not exist"):
        deploy_tensorflow_model(None, "m", "1", "doubles", keras_func, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeployError, match="neither a SavedModel directory"):
        deploy_tensorflow_model(None, "m", "1", "doubles", keras_func, str(tmp_path / "empty"))


class Doubler(keras.layers.Layer):
    """A custom layer that is not registered as serializable: saved, but not loadable."""

    def call(self, x: Any) -> Any:
        return x * 2.0


def test_unloadable_keras_model_fails_at_deploy_time(keras_func: Callable[..., Any]) -> None:
    model = keras.Sequential([keras.Input((4,)), Doubler()])
    with pytest.raises(DeployError, match=r"(?s)cannot be loaded back.*register_keras_serializable"):
        deploy_tensorflow_model(None, "m", "1", "doubles", keras_func, model)
