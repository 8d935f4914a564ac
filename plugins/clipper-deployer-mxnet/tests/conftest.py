"""Small MXNet models trained on generated data, shared by the tests of this plugin."""

from __future__ import annotations

import json
from typing import Any

import mxnet as mx
import numpy as np
import pytest

#: Batch size the Module is bound with (its mxnet_data_shapes).
BOUND_BATCH = 4
FEATURES = 5


@pytest.fixture(scope="session")
def training_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, FEATURES)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    return x, y


@pytest.fixture(scope="session")
def sample_inputs() -> list[list[float]]:
    """Five inputs (more than BOUND_BATCH, so a batch needs several bound batches)."""
    rng = np.random.default_rng(11)
    return rng.normal(size=(5, FEATURES)).round(3).tolist()


@pytest.fixture(scope="session")
def module_model(training_data: tuple[np.ndarray, np.ndarray]) -> Any:
    """A fitted two-layer Module (FC 8 relu, FC 2, softmax) as in the seeds' example."""
    mx.random.seed(3)
    x, y = training_data
    data = mx.sym.Variable("data")
    hidden = mx.sym.Activation(mx.sym.FullyConnected(data, name="fc1", num_hidden=8),
                               name="relu1", act_type="relu")
    out = mx.sym.SoftmaxOutput(mx.sym.FullyConnected(hidden, name="fc2", num_hidden=2),
                               name="softmax")
    module = mx.mod.Module(out, context=mx.cpu())
    module.fit(mx.io.NDArrayIter(x, y, batch_size=BOUND_BATCH, shuffle=True), num_epoch=2,
               optimizer_params={"learning_rate": 0.1})
    return module


@pytest.fixture(scope="session")
def module_data_shapes() -> list[Any]:
    return mx.io.NDArrayIter(np.zeros((BOUND_BATCH, FEATURES), np.float32),
                             batch_size=BOUND_BATCH).provide_data


@pytest.fixture(scope="session")
def module_probabilities() -> Any:
    """Class probabilities of any number of inputs from a Module bound to BOUND_BATCH rows.

    Module.predict pads the last batch of the iterator to the bound size and drops the padding,
    so one function serves every batch size the frontend sends.
    """

    def probabilities(module: Any, inputs: Any) -> np.ndarray:
        rows = np.asarray(inputs, dtype=np.float32)
        return module.predict(mx.io.NDArrayIter(rows, batch_size=BOUND_BATCH)).asnumpy()

    return probabilities


@pytest.fixture
def module_func(module_probabilities: Any) -> Any:
    def predict(model: Any, inputs: Any) -> list[str]:
        return [json.dumps(p.tolist()) for p in module_probabilities(model, inputs)]

    return predict


@pytest.fixture(scope="session")
def gluon_model(training_data: tuple[np.ndarray, np.ndarray]) -> Any:
    """A hybridized Gluon regression net trained a few steps with autograd."""
    mx.random.seed(5)
    x, y = training_data
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(8, activation="relu"), mx.gluon.nn.Dense(1))
    net.initialize(mx.init.Xavier())
    net.hybridize()
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.05})
    loss_fn = mx.gluon.loss.L2Loss()
    data, label = mx.nd.array(x), mx.nd.array(y)
    for _ in range(20):
        with mx.autograd.record():
            loss = loss_fn(net(data), label)
        loss.backward()
        trainer.step(len(x))
    return net


@pytest.fixture
def gluon_func() -> Any:
    def predict(model: Any, inputs: Any) -> list[float]:
        out = model(mx.nd.array(np.asarray(inputs, dtype=np.float32)))
        return [float(v) for v in out.asnumpy()[:, 0]]

    return predict
