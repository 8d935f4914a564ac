"""The TensorFlow deployer: the model in ``tfmodel/``, ``func(model_or_session, inputs)``.

What ``deploy_tensorflow_model`` accepts and what ``func`` receives in the replica:

=============================================  ======================  =========================
given                                          saved as (``format``)   ``func`` receives
=============================================  ======================  =========================
a Keras model object                           ``model.keras``         the Keras model
                                               (``keras``)
a path to a ``.keras`` file                    copied (``keras``)      the Keras model
a ``tf.Module`` object                         SavedModel              the restored object
                                               (``saved_model``)       (``tf.saved_model.load``)
a SavedModel directory (``tf.saved_model``     copied                  the restored object
save, ``model.export``)                        (``saved_model``)
a TF1 SavedModel directory                     copied                  a ``tf.compat.v1.Session``
(``tf.compat.v1.saved_model``)                 (``saved_model_v1``)    with it loaded (``serve``)
a ``tf.compat.v1.Session``                     meta graph + checkpoint a ``tf.compat.v1.Session``
                                               (``checkpoint``)        with the graph restored
a TF1 checkpoint directory (``*.meta``)        copied (``checkpoint``) a ``tf.compat.v1.Session``
=============================================  ======================  =========================

Sessions are used as the original Clipper did: ``sess.run('out:0', feed_dict={'in:0': x})``.
Every kind is loaded once in the deploying process before it is accepted, so a model that
cannot be restored (e.g. a Keras layer class that is not registered) fails at deploy time.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from clipper_core.deployers.api import Bundle, Deployer, Predictor
from clipper_core.exceptions import DeployError

MODEL_DIR = "tfmodel"
KERAS_FILE = "model.keras"
CHECKPOINT_PREFIX = "model.ckpt"

# the ``format`` recorded in bundle.json
KERAS = "keras"
SAVED_MODEL = "saved_model"
SAVED_MODEL_V1 = "saved_model_v1"
CHECKPOINT = "checkpoint"

_EXPECTED = ("a Keras model, a tf.Module, a tf.compat.v1.Session, or the path of a SavedModel "
             "directory, a TF1 checkpoint directory or a .keras file")


def _is_tf1_saved_model(directory: Path) -> bool:
    """True for a SavedModel written by TF1's builder (no TF2 object graph to restore)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((directory / "saved_model.pb").read_bytes())
    return not any(len(mg.object_graph_def.nodes) for mg in proto.meta_graphs)


def _classify_path(path: Path) -> str:
    if path.is_file() and path.suffix == ".keras":
        return KERAS
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return SAVED_MODEL_V1 if _is_tf1_saved_model(path) else SAVED_MODEL
    if path.is_dir() and any(path.glob("*.meta")):
        return CHECKPOINT
    if not path.exists():
        msg = f"tf_sess_or_saved_model_path {str(path)!r} does not exist. Expected {_EXPECTED}"
    else:
        msg = (f"tf_sess_or_saved_model_path {str(path)!r} is neither a SavedModel directory "
               f"(with saved_model.pb), a TF1 checkpoint directory (with a .meta file) nor a "
               f".keras file. Expected {_EXPECTED}")
    raise DeployError(msg)


def _save_session(sess: Any, target: Path) -> None:
    """Meta graph and variables of a TF1 session, as ``tf.compat.v1.train.Saver`` writes them."""
    import tensorflow as tf
    target.mkdir()
    with sess.graph.as_default():
        if tf.compat.v1.global_variables():
            tf.compat.v1.train.Saver().save(sess, str(target / CHECKPOINT_PREFIX))
        else:
            tf.compat.v1.train.export_meta_graph(str(target / f"{CHECKPOINT_PREFIX}.meta"))


def _session_from_checkpoint(directory: Path) -> Any:
    import tensorflow as tf
    meta = next(directory.glob("*.meta"))
    graph = tf.Graph()
    sess = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(str(meta), clear_devices=True)
        checkpoint = tf.train.latest_checkpoint(str(directory)) or str(meta.with_suffix(""))
        if saver is not None and Path(f"{checkpoint}.index").exists():
            saver.restore(sess, checkpoint)
    return sess


def _session_from_saved_model(directory: Path) -> Any:
    import tensorflow as tf
    graph = tf.Graph()
    sess = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        tf.compat.v1.saved_model.loader.load(
            sess, [tf.compat.v1.saved_model.tag_constants.SERVING], str(directory))
    return sess


def load_model(directory: Path, kind: str) -> Any:
    """What ``func`` receives for a model of ``kind`` saved under ``directory``."""
    import tensorflow as tf
    if kind == KERAS:
        import keras

        return keras.saving.load_model(str(directory / KERAS_FILE))
    if kind == SAVED_MODEL:
        return tf.saved_model.load(str(directory))
    if kind == SAVED_MODEL_V1:
        return _session_from_saved_model(directory)
    if kind == CHECKPOINT:
        return _session_from_checkpoint(directory)
    msg = (f"Unknown TensorFlow model format {kind!r} in the bundle (expected one of "
           f"{KERAS}, {SAVED_MODEL}, {SAVED_MODEL_V1}, {CHECKPOINT})")
    raise DeployError(msg)


class TensorFlowDeployer(Deployer):
    """Saves a TensorFlow or Keras model; replicas call ``func(model_or_session, inputs)``."""

    name = "tensorflow"
    func_extra_args = 1
    image_requirements = ("tensorflow-cpu>=2.16",)

    def describe_call(self) -> str:
        return "func(model_or_session, inputs)"

    def save(self, bundle_dir: Path, model: Any) -> dict[str, Any]:
        import keras
        import tensorflow as tf

        target = bundle_dir / MODEL_DIR
        if isinstance(model, str | os.PathLike):
            path = Path(model)
            kind = _classify_path(path)
            if kind == KERAS:
                target.mkdir()
                shutil.copyfile(path, target / KERAS_FILE)
            else:
                shutil.copytree(path, target)
        elif isinstance(model, keras.Model):
            kind = KERAS
            target.mkdir()
            self._guard(lambda: model.save(str(target / KERAS_FILE)), model)
        elif isinstance(model, tf.compat.v1.Session):
            kind = CHECKPOINT
            self._guard(lambda: _save_session(model, target), model)
        elif isinstance(model, tf.Module):
            kind = SAVED_MODEL
            self._guard(lambda: tf.saved_model.save(model, str(target)), model)
        else:
            msg = (f"deploy_tensorflow_model expects tf_sess_or_saved_model_path to be "
                   f"{_EXPECTED}; got {type(model).__module__}.{type(model).__name__}")
            raise DeployError(msg)
        try:
            loaded = load_model(target, kind)
            if isinstance(loaded, tf.compat.v1.Session):
                loaded.close()
        except Exception as exc:
            msg = (f"The TensorFlow model was saved but cannot be loaded back "
                   f"({type(exc).__name__}: {exc}). For Keras models with custom layers, "
                   "register them with @keras.saving.register_keras_serializable() in a module "
                   "the replica can import (pkgs_to_install)")
            raise DeployError(msg) from exc
        return {"format": kind}

    @staticmethod
    def _guard(save: Any, model: Any) -> None:
        try:
            save()
        except Exception as exc:
            msg = (f"Error saving TensorFlow model {type(model).__name__}: "
                   f"{type(exc).__name__}: {exc}")
            raise DeployError(msg) from exc

    def load(self, bundle: Bundle) -> Predictor:
        func = bundle.load_function()
        model = load_model(bundle.path / MODEL_DIR, bundle.extra["format"])

        def predict(inputs: Any) -> Any:
            return func(model, inputs)

        return predict
