"""MXNet-specific behaviour: bundle contents, variable batch sizes, deploy-time refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np
import pytest
from clipper_deployer_mxnet import MXNetDeployer

from clipper_core.deployers.api import Bundle, write_bundle
from clipper_core.exceptions import DeployError
from clipper_core.testing.conformance import replica_batch


def _identity(model: Any, inputs: Any) -> list[str]:
    return [str(x) for x in inputs]


def test_module_bundle_holds_the_checkpoint_and_the_shapes(
        tmp_path: Path, module_model: Any, module_data_shapes: list[Any]) -> None:
    bundle = write_bundle(MXNetDeployer(module_data_shapes), tmp_path, "doubles", _identity,
                          module_model)
    assert (tmp_path / "mxnet_model-symbol.json").is_file()
    assert (tmp_path / "mxnet_model-0000.params").is_file()
    assert bundle.extra == {
        "kind": "module",
        "data_shapes": [{"name": "data", "shape": [4, 5], "dtype": "float32",
                         "layout": "NCHW"}],
        "data_names": ["data"],
        "label_names": ["softmax_label"],
    }


def test_module_from_name_shape_pairs_serves_any_batch_size_by_rebinding(
        tmp_path: Path, module_model: Any, module_probabilities: Any,
        training_data: tuple[np.ndarray, np.ndarray]) -> None:
    """The seeds' advice for variable batches: rebind to the batch's shape, then forward."""

    def predict(model: Any, inputs: Any) -> list[list[float]]:
        rows = mx.nd.array(np.asarray(inputs, dtype=np.float32))
        model.bind(data_shapes=[("data", rows.shape)], for_training=False, force_rebind=True)
        model.forward(mx.io.DataBatch([rows]), is_train=False)
        return model.get_outputs()[0].asnumpy().tolist()

    write_bundle(MXNetDeployer([("data", (1, 5))]), tmp_path, "doubles", predict, module_model)
    loaded = MXNetDeployer().load(Bundle.read(tmp_path))
    x = training_data[0]
    for n in (1, 3, 9):
        got = np.asarray(loaded(replica_batch("doubles", x[:n].tolist())))
        np.testing.assert_allclose(got, module_probabilities(module_model, x[:n]), rtol=1e-5)


def test_gluon_block_is_run_once_when_shapes_are_given(
        tmp_path: Path, gluon_func: Any) -> None:
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(3, activation="tanh"), mx.gluon.nn.Dense(1))
    net.initialize()
    bundle = write_bundle(MXNetDeployer([("data", (1, 5))]), tmp_path, "floats", gluon_func, net)
    assert bundle.extra == {"kind": "gluon", "input_names": ["data"]}
    inputs = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    loaded = MXNetDeployer().load(Bundle.read(tmp_path))
    expected = net(mx.nd.array(inputs)).asnumpy()[:, 0]
    np.testing.assert_allclose(loaded(replica_batch("floats", inputs.tolist())), expected,
                               rtol=1e-5)


def test_gluon_block_never_run_without_shapes_is_refused(tmp_path: Path) -> None:
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(2))
    net.initialize()
    with pytest.raises(DeployError, match=r"hybridize\(\) and run it on one batch"):
        write_bundle(MXNetDeployer(), tmp_path, "floats", _identity, net)


def test_uninitialized_gluon_block_is_refused(tmp_path: Path) -> None:
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(2))
    with pytest.raises(DeployError, match="Initialize the block's parameters"):
        write_bundle(MXNetDeployer([("data", (1, 5))]), tmp_path, "floats", _identity, net)


def test_plain_gluon_block_is_refused(tmp_path: Path) -> None:
    class Plain(mx.gluon.Block):
        def forward(self, x: Any) -> Any:
            return x

    with pytest.raises(DeployError, match="Gluon Plain, which is not a HybridBlock"):
        write_bundle(MXNetDeployer(), tmp_path, "floats", _identity, Plain())


def test_module_without_data_shapes_is_refused(tmp_path: Path, module_model: Any) -> None:
    with pytest.raises(DeployError, match="needs mxnet_data_shapes"):
        write_bundle(MXNetDeployer(None), tmp_path, "doubles", _identity, module_model)


@pytest.mark.parametrize("shapes", ["data", [], [42], [("data",)]])
def test_malformed_data_shapes_are_refused(tmp_path: Path, module_model: Any,
                                           shapes: Any) -> None:
    with pytest.raises(DeployError, match=r"mxnet_data_shapes|\(name, shape\) pair"):
        write_bundle(MXNetDeployer(shapes), tmp_path, "doubles", _identity, module_model)


def test_data_shapes_naming_other_inputs_are_refused(tmp_path: Path,
                                                     module_model: Any) -> None:
    with pytest.raises(DeployError, match=r"name the inputs \['pixels'\].*data_names are"):
        write_bundle(MXNetDeployer([("pixels", (1, 5))]), tmp_path, "doubles", _identity,
                     module_model)


def test_unfitted_module_is_refused(tmp_path: Path) -> None:
    module = mx.mod.Module(mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=2))
    with pytest.raises(DeployError, match="fit it"):
        write_bundle(MXNetDeployer([("data", (1, 5))]), tmp_path, "doubles", _identity, module)
