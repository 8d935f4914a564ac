"""Small models trained on generated data: an ONNX logistic regression and a PyTorch MLP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points in R^4 in two classes split by a fixed hyperplane."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    return x, (x @ np.array([1.5, -1.0, 0.5, 2.0]) > 0.2).astype(np.int64)


@pytest.fixture(scope="session")
def logistic_weights() -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression fitted by gradient descent: weights (4, 2) and bias (2,)."""
    x, y = make_data(300, seed=3)
    w, b = np.zeros((4, 2)), np.zeros(2)
    onehot = np.eye(2)[y]
    for _ in range(300):
        logits = x @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        w -= 0.5 * x.T @ (p - onehot) / len(x)
        b -= 0.5 * (p - onehot).mean(0)
    accuracy = ((x @ w + b).argmax(1) == y).mean()
    assert accuracy > 0.9, f"the test model did not learn (accuracy {accuracy})"
    return w.astype(np.float32), b.astype(np.float32)


@pytest.fixture(scope="session")
def onnx_model(logistic_weights: tuple[np.ndarray, np.ndarray]) -> onnx.ModelProto:
    """The regression as an ONNX graph: probs = Softmax(x @ W + b)."""
    w, b = logistic_weights
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]),
         helper.make_node("Add", ["xw", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "logistic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="session")
def sample_inputs() -> list[list[float]]:
    return make_data(5, seed=4)[0].tolist()


@pytest.fixture(scope="session")
def direct_probabilities(logistic_weights: tuple[np.ndarray, np.ndarray],
                         sample_inputs: list[list[float]]) -> list[list[float]]:
    """The regression computed directly with numpy."""
    w, b = logistic_weights
    logits = np.asarray(sample_inputs) @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).tolist()


@pytest.fixture
def session_probabilities() -> Callable[[Any, Any], list[str]]:
    """A prediction function: run the session's first input and output, one JSON row each."""

    def predict(session: Any, inputs: Any) -> list[str]:
        x = np.asarray(np.stack(list(inputs)), dtype=np.float32)
        name = session.get_inputs()[0].name
        return [json.dumps(row) for row in session.run(None, {name: x})[0].tolist()]

    return predict


@pytest.fixture(scope="session")
def torch_mlp() -> torch.nn.Module:
    """A small PyTorch classifier trained on the same kind of data."""
    torch.manual_seed(0)
    x, y = make_data(256, seed=5)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2),
                              torch.nn.Softmax(dim=1))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    features, labels = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    for _ in range(80):
        optimizer.zero_grad()
        torch.nn.functional.nll_loss(torch.log(net(features)), labels).backward()
        optimizer.step()
    net.eval()
    return net
