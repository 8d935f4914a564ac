"""Deploy TensorFlow and Keras models to Clipper: ``deploy_tensorflow_model``, ``create_endpoint``.

Also importable as ``clipper_admin.deployers.tensorflow`` (the seeds' path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from clipper_core.deployers import api
from clipper_deployer_tensorflow.deployer import TensorFlowDeployer

if TYPE_CHECKING:
    from clipper_core.admin.connection import ClipperConnection

__all__ = ["TensorFlowDeployer", "create_endpoint", "deploy_tensorflow_model"]


def deploy_tensorflow_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    func: Callable[[Any, Any], Any],
    tf_sess_or_saved_model_path: Any,
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Deploy ``func(model_or_session, inputs)`` with a TensorFlow or Keras model.

    ``tf_sess_or_saved_model_path`` is a Keras model, a ``tf.Module``, a TF1-style
    ``tf.compat.v1.Session``, or the path of a SavedModel directory, a TF1 checkpoint directory
    or a ``.keras`` file. Each replica loads it once; ``func`` gets the Keras model, the
    restored SavedModel object, or a Session (for TF1 graphs), and a batch of inputs.
    """
    api.deploy(TensorFlowDeployer(), clipper_conn, name, version, input_type, func,
               tf_sess_or_saved_model_path, base_image, labels, registry, num_replicas,
               batch_size, pkgs_to_install)


def create_endpoint(
    clipper_conn: ClipperConnection,
    name: str,
    input_type: str,
    func: Callable[[Any, Any], Any],
    tf_sess_or_saved_model_path: Any,
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
    """Register an application, deploy the TensorFlow model under the same name and link them."""
    api.create_endpoint(
        deploy_tensorflow_model, clipper_conn, name, input_type, default_output, version,
        slo_micros, func=func, tf_sess_or_saved_model_path=tf_sess_or_saved_model_path,
        base_image=base_image, labels=labels, registry=registry, num_replicas=num_replicas,
        batch_size=batch_size, pkgs_to_install=pkgs_to_install,
    )
