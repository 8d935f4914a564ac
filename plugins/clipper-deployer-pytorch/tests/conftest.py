"""A small PyTorch classifier trained on generated data, shared by the tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """Two-layer classifier; defined here (not in an installed package) on purpose: the
    deployer must carry the class by value to replicas that cannot import this file."""

    def __init__(self, features: int = 4, hidden: int = 8, classes: int = 2) -> None:
        super().__init__()
        self.hidden = nn.Linear(features, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.out(torch.relu(self.hidden(x))), dim=-1)


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points in R^4, labelled by the sign of a fixed linear function."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (x @ np.array([1.0, -2.0, 0.5, 1.5]) > 0).astype(np.int64)
    return x, y


@pytest.fixture(scope="session")
def trained_net() -> TinyNet:
    torch.manual_seed(0)
    x, y = make_data(256, seed=1)
    net = TinyNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    features, labels = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    for _ in range(60):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(torch.log(net(features)), labels)
        loss.backward()
        optimizer.step()
    net.eval()
    accuracy = (net(features).argmax(-1) == labels).float().mean().item()
    assert accuracy > 0.9, f"the test model did not learn (accuracy {accuracy})"
    return net


@pytest.fixture(scope="session")
def sample_inputs() -> list[list[float]]:
    x, _ = make_data(5, seed=2)
    return x.tolist()


@pytest.fixture(scope="session")
def direct_probabilities(trained_net: TinyNet, sample_inputs: list[list[float]]) -> list[list[float]]:
    """The trained model called directly on the sample inputs, without Clipper."""
    with torch.no_grad():
        return trained_net(torch.tensor(sample_inputs, dtype=torch.float32)).tolist()


@pytest.fixture
def probabilities_as_json() -> Callable[[Any, Any], list[str]]:
    """A prediction function: class probabilities of each input, as JSON."""

    def predict(model: Any, inputs: Any) -> list[str]:
        batch = torch.as_tensor(np.asarray(list(inputs), dtype=np.float32))
        return [json.dumps(row) for row in model(batch).tolist()]

    return predict
