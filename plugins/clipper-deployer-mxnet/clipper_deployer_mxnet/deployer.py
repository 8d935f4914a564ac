"""The MXNet deployer: Module checkpoints and Gluon HybridBlocks.

The bundle holds ``mxnet_model-symbol.json`` and ``mxnet_model-0000.params`` (what
``Module.save_checkpoint(prefix, 0)`` and ``HybridBlock.export(prefix, 0)`` write) and, in
``bundle.json``'s ``extra``, how to rebuild the model inside the replica:

- ``{"kind": "module", "data_shapes": [...], "data_names": [...], "label_names": [...]}``:
  ``load_checkpoint`` + ``Module(symbol)`` + ``bind(data_shapes, for_training=False)`` +
  ``set_params``;
- ``{"kind": "gluon", "input_names": [...]}``: ``SymbolBlock.imports``.

``mxnet`` is imported inside the methods, so that loading the plugin (which every Clipper
process does) does not import MXNet.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipper_core.deployers import api
from clipper_core.deployers.api import Bundle, Deployer, Predictor
from clipper_core.exceptions import DeployError

if TYPE_CHECKING:
    from collections.abc import Callable

    from clipper_core.admin.connection import ClipperConnection

#: File prefix of the checkpoint inside the bundle (the original deployer's name).
PREFIX = "mxnet_model"
EPOCH = 0


def _describe(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def data_shapes_to_json(data_shapes: Any) -> list[dict[str, Any]]:
    """``[DataDesc | (name, shape)]`` as JSON-able dicts; DeployError if it is neither."""
    import mxnet as mx
    import numpy as np

    if not isinstance(data_shapes, Sequence) or isinstance(data_shapes, str) or not data_shapes:
        msg = (
            "mxnet_data_shapes must be a non-empty list of mxnet.io.DataDesc (such as "
            f"data_iter.provide_data) or of (name, shape) pairs, got {data_shapes!r}"
        )
        raise DeployError(msg)
    out = []
    for item in data_shapes:
        try:
            desc = item if isinstance(item, mx.io.DataDesc) else mx.io.DataDesc(*item)
            shape = [int(dim) for dim in desc.shape]
        except (TypeError, ValueError):
            msg = (
                "Each entry of mxnet_data_shapes must be an mxnet.io.DataDesc or a "
                f"(name, shape) pair such as ('data', (1, 784)), got {item!r}"
            )
            raise DeployError(msg) from None
        out.append({"name": str(desc.name), "shape": shape,
                    "dtype": np.dtype(desc.dtype).name, "layout": str(desc.layout)})
    return out


def data_shapes_from_json(data_shapes: list[dict[str, Any]]) -> list[Any]:
    import mxnet as mx

    return [mx.io.DataDesc(d["name"], tuple(d["shape"]), d["dtype"], d["layout"])
            for d in data_shapes]


class MXNetDeployer(Deployer):
    """``func(model, inputs)`` where model is a bound ``mx.mod.Module`` or a ``SymbolBlock``.

    ``data_shapes`` (the seeds' ``mxnet_data_shapes``) is needed to save a Module; for a Gluon
    block it is optional and only used to run the block once if it was never run hybridized.
    """

    name = "mxnet"
    func_extra_args = 1
    image_requirements = ("mxnet==1.9.1", "numpy<1.24")
    #: libmxnet.so links against the system's OpenMP and quadmath runtimes.
    image_apt_packages = ("libgomp1", "libquadmath0")

    def __init__(self, data_shapes: Any = None) -> None:
        self.data_shapes = data_shapes

    def describe_call(self) -> str:
        return "func(model, inputs)"

    def save(self, bundle_dir: Path, model: Any) -> dict[str, Any]:
        import mxnet as mx

        if isinstance(model, mx.mod.Module):
            return self._save_module(bundle_dir, model)
        if isinstance(model, mx.gluon.HybridBlock):
            return self._save_gluon(bundle_dir, model)
        if isinstance(model, mx.gluon.Block):
            msg = (
                f"mxnet_model is a Gluon {type(model).__name__}, which is not a HybridBlock: "
                "only HybridBlocks can be exported to a symbol and parameters. Build the network "
                "from Hybrid layers (e.g. mx.gluon.nn.HybridSequential) and deploy that"
            )
            raise DeployError(msg)
        msg = (
            "mxnet_model must be a fitted mxnet.mod.Module or a Gluon HybridBlock, got "
            f"{_describe(model)}"
        )
        raise DeployError(msg)

    def _save_module(self, bundle_dir: Path, model: Any) -> dict[str, Any]:
        if self.data_shapes is None:
            msg = (
                "Deploying an MXNet Module needs mxnet_data_shapes (e.g. "
                "data_iter.provide_data): the replica binds the module with them"
            )
            raise DeployError(msg)
        shapes = data_shapes_to_json(self.data_shapes)
        names = [d["name"] for d in shapes]
        if sorted(names) != sorted(model.data_names):
            msg = (
                f"mxnet_data_shapes name the inputs {names}, but the Module's data_names are "
                f"{list(model.data_names)}; give one shape per data input, with the same names"
            )
            raise DeployError(msg)
        if not (model.binded and model.params_initialized):
            msg = (
                "The MXNet Module has no parameters yet: fit it (or bind it and call "
                "init_params) before deploying it"
            )
            raise DeployError(msg)
        try:
            model.save_checkpoint(str(bundle_dir / PREFIX), EPOCH)
        except Exception as exc:
            msg = f"Could not save the MXNet Module with save_checkpoint: {exc}"
            raise DeployError(msg) from exc
        return {"kind": "module", "data_shapes": shapes, "data_names": list(model.data_names),
                "label_names": list(model.label_names)}

    def _save_gluon(self, bundle_dir: Path, block: Any) -> dict[str, Any]:
        import mxnet as mx

        prefix = str(bundle_dir / PREFIX)
        if self.data_shapes is not None:
            # export() needs the graph that a hybridized forward pass caches.
            self._run_once(block)
        try:
            block.export(prefix, EPOCH)
        except Exception as exc:
            msg = (
                f"Could not export the Gluon block: {exc} Call block.hybridize() and run it on "
                "one batch before deploying, or pass mxnet_data_shapes so that the deployer "
                "does it"
            )
            raise DeployError(msg) from exc
        symbol = mx.sym.load(f"{prefix}-symbol.json")
        params = mx.nd.load(f"{prefix}-{EPOCH:04d}.params")
        stored = {key.split(":", 1)[-1] for key in params}
        inputs = [name for name in symbol.list_inputs() if name not in stored]
        return {"kind": "gluon", "input_names": inputs}

    def _run_once(self, block: Any) -> None:
        import mxnet as mx

        descs = data_shapes_from_json(data_shapes_to_json(self.data_shapes))
        block.hybridize()
        try:
            block(*(mx.nd.zeros(d.shape, dtype=d.dtype) for d in descs))
        except Exception as exc:
            msg = (
                f"Could not run the Gluon block on zeros of mxnet_data_shapes {descs}: {exc}. "
                "Initialize the block's parameters and give shapes it accepts"
            )
            raise DeployError(msg) from exc

    def load(self, bundle: Bundle) -> Predictor:
        import mxnet as mx

        func = bundle.load_function()
        extra = bundle.extra
        prefix = str(bundle.path / PREFIX)
        if extra["kind"] == "module":
            symbol, arg_params, aux_params = mx.model.load_checkpoint(prefix, EPOCH)
            model = mx.mod.Module(symbol, data_names=extra["data_names"],
                                  label_names=extra["label_names"], context=mx.cpu())
            with warnings.catch_warnings():
                # Inference binds no label shapes; MXNet warns that the labels are unbound.
                warnings.filterwarnings("ignore", "Data provided by label_shapes", UserWarning)
                model.bind(data_shapes=data_shapes_from_json(extra["data_shapes"]),
                           for_training=False)
            model.set_params(arg_params, aux_params)
        else:
            with warnings.catch_warnings():
                # The exported inputs carry no dtype; MXNet warns and uses float32.
                warnings.filterwarnings("ignore", "Cannot decide type", UserWarning)
                model = mx.gluon.SymbolBlock.imports(
                    f"{prefix}-symbol.json", extra["input_names"],
                    f"{prefix}-{EPOCH:04d}.params", ctx=mx.cpu())
        return functools.partial(func, model)


def deploy_mxnet_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    func: Callable[..., Any],
    mxnet_model: Any,
    mxnet_data_shapes: Any,
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Deploy ``func(model, inputs)`` with an MXNet Module or Gluon HybridBlock."""
    api.deploy(MXNetDeployer(mxnet_data_shapes), clipper_conn, name, version, input_type, func,
               mxnet_model, base_image, labels, registry, num_replicas, batch_size,
               pkgs_to_install)


def create_endpoint(
    clipper_conn: ClipperConnection,
    name: str,
    input_type: str,
    func: Callable[..., Any],
    mxnet_model: Any,
    mxnet_data_shapes: Any,
    default_output: str = "None",
    version: Any = 1,
    slo_micros: int = 3000000,
    labels: list[str] | None = None,
    registry: str | None = None,
    base_image: str = "default",
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Register an application, deploy the MXNet model under the same name and link them."""
    api.create_endpoint(
        deploy_mxnet_model, clipper_conn, name, input_type, default_output, version, slo_micros,
        func=func, mxnet_model=mxnet_model, mxnet_data_shapes=mxnet_data_shapes,
        base_image=base_image, labels=labels, registry=registry, num_replicas=num_replicas,
        batch_size=batch_size, pkgs_to_install=pkgs_to_install,
    )
