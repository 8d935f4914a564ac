"""Small TensorFlow models trained on generated data: Keras, TF1 graph, tf.Module."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # replicas inherit it: quieter logs

import keras
import numpy as np
import pytest
import tensorflow as tf


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points in R^4 in two classes split by a fixed hyperplane."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    return x, (x @ np.array([2.0, -1.0, 1.0, 0.5]) > 0.0).astype(np.int64)


@pytest.fixture(scope="session")
def keras_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    x, y = make_data(256, seed=1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=25, batch_size=64, verbose=0)
    assert history.history["accuracy"][-1] > 0.9, "the test model did not learn"
    return model


@pytest.fixture(scope="session")
def sample_inputs() -> list[list[float]]:
    return make_data(5, seed=2)[0].tolist()


@pytest.fixture(scope="session")
def keras_probabilities(keras_model: keras.Model,
                        sample_inputs: list[list[float]]) -> list[list[float]]:
    """The Keras model called directly."""
    return keras_model(np.asarray(sample_inputs, dtype=np.float32)).numpy().tolist()


@pytest.fixture
def keras_func() -> Callable[[Any, Any], list[str]]:
    """Prediction function of Keras models: class probabilities as JSON rows."""

    def predict(model: Any, inputs: Any) -> list[str]:
        x = np.asarray(np.stack(list(inputs)), dtype=np.float32)
        return [json.dumps(row) for row in model(x, training=False).numpy().tolist()]

    return predict


@pytest.fixture(scope="session")
def tf1_session() -> Iterator[tf.compat.v1.Session]:
    """A TF1-style graph trained in a Session: tensors ``pixels:0`` -> ``predict_class:0``."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(0)
        pixels = tf.compat.v1.placeholder(tf.float32, [None, 4], name="pixels")
        labels = tf.compat.v1.placeholder(tf.int64, [None], name="labels")
        w = tf.compat.v1.get_variable("w", [4, 2], initializer=tf.compat.v1.zeros_initializer())
        b = tf.compat.v1.get_variable("b", [2], initializer=tf.compat.v1.zeros_initializer())
        logits = tf.matmul(pixels, w) + b
        tf.nn.softmax(logits, name="probabilities")
        tf.argmax(logits, axis=1, name="predict_class")
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        train = tf.compat.v1.train.GradientDescentOptimizer(0.5).minimize(loss)
        init = tf.compat.v1.global_variables_initializer()
    sess = tf.compat.v1.Session(graph=graph)
    sess.run(init)
    x, y = make_data(256, seed=3)
    for _ in range(100):
        sess.run(train, feed_dict={pixels: x, labels: y})
    accuracy = (sess.run("predict_class:0", feed_dict={"pixels:0": x}) == y).mean()
    assert accuracy > 0.9, f"the TF1 test model did not learn (accuracy {accuracy})"
    yield sess
    sess.close()


@pytest.fixture
def session_class_func() -> Callable[[Any, Any], list[int]]:
    """The original Clipper's TF example: run ``predict_class:0`` fed by ``pixels:0``."""

    def predict(sess: Any, inputs: Any) -> list[int]:
        x = np.asarray(np.stack(list(inputs)), dtype=np.float32)
        return sess.run("predict_class:0", feed_dict={"pixels:0": x}).tolist()

    return predict


class Affine(tf.Module):
    """softmax(x W + b) with a fixed input signature, so it survives tf.saved_model.save."""

    def __init__(self, w: np.ndarray, b: np.ndarray) -> None:
        super().__init__()
        self.w = tf.Variable(w)
        self.b = tf.Variable(b)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float64)])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.softmax(tf.matmul(x, self.w) + self.b)


@pytest.fixture(scope="session")
def affine_module() -> Affine:
    """Least-squares fit of one-hot labels on generated data, as a tf.Module."""
    x, y = make_data(200, seed=4)
    design = np.hstack([x, np.ones((len(x), 1))])
    coef, *_ = np.linalg.lstsq(design, np.eye(2)[y] * 4.0, rcond=None)
    return Affine(coef[:4], coef[4])
