"""The PySpark deployer: ``pyspark.ml`` models and pipelines, and ``pyspark.mllib`` models.

The bundle holds ``pyspark_model_data/``, written by the framework's own ``save``
(``model.save(path)`` for ``pyspark.ml``, ``model.save(sc, path)`` for ``pyspark.mllib``), and
in ``bundle.json``'s ``extra`` the class to load it with and which API wrote it::

    {"model_class": "pyspark.ml.pipeline.PipelineModel", "api": "ml"}

Inside the replica, :meth:`PySparkDeployer.load` starts one long-lived local SparkSession,
loads the model with it once and calls ``func(spark, model, inputs)`` for every batch.
``pyspark`` is imported inside the methods, so that loading the plugin (which every Clipper
process does) does not import PySpark.
"""

from __future__ import annotations

import functools
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipper_core.deployers import api
from clipper_core.deployers.api import Bundle, Deployer, Predictor
from clipper_core.exceptions import DeployError

if TYPE_CHECKING:
    from collections.abc import Callable

    from clipper_core.admin.connection import ClipperConnection

#: Directory of the saved model inside the bundle (the original deployer's name).
MODEL_DIR = "pyspark_model_data"

#: Configuration of the replica's SparkSession: one local core, no web UI, a small driver.
SPARK_CONF = {
    "spark.master": "local[1]",
    "spark.app.name": "clipper-pyspark",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "512m",
    "spark.sql.shuffle.partitions": "1",
    # Python workers (UDFs, RDD maps inside func) run with the replica's interpreter.
    "spark.pyspark.python": sys.executable,
}


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_class(qualified_name: str) -> Any:
    module, _, name = qualified_name.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _is_mllib_model(model: Any) -> bool:
    """A pyspark.mllib model: ``save(sc, path)`` (not all of them derive from ``Saveable``)."""
    from_mllib = any(c.__module__.startswith("pyspark.mllib.") for c in type(model).__mro__)
    return from_mllib and callable(getattr(model, "save", None))


def start_spark_session() -> Any:
    """The replica's SparkSession (or the process's existing one, when there is one)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


class PySparkDeployer(Deployer):
    """``func(spark, model, inputs)`` with a model saved by PySpark's own ``save``.

    ``sc`` (the SparkContext the model was trained with) is needed to save ``pyspark.mllib``
    models; ``pyspark.ml`` models save without it.
    """

    name = "pyspark"
    func_extra_args = 2
    image_requirements = ("pyspark",)
    #: Spark runs on the JVM.
    image_apt_packages = ("openjdk-17-jre-headless",)

    def __init__(self, sc: Any = None) -> None:
        self.sc = sc

    def describe_call(self) -> str:
        return "func(spark, model, inputs)"

    def save(self, bundle_dir: Path, model: Any) -> dict[str, Any]:
        from pyspark import SparkContext
        from pyspark.ml.base import Estimator, Transformer
        from pyspark.ml.util import MLWritable

        path = (bundle_dir / MODEL_DIR).absolute().as_uri()
        kind = _qualified_name(type(model))
        if isinstance(model, Estimator):
            msg = (
                f"pyspark_model is an unfitted estimator ({kind}). Fit it (model = "
                "estimator.fit(df)) and deploy the fitted model"
            )
            raise DeployError(msg)
        if isinstance(model, Transformer) and isinstance(model, MLWritable):
            api_name = "ml"
        elif _is_mllib_model(model):
            api_name = "mllib"
        else:
            msg = (
                "pyspark_model must be a fitted pyspark.ml model or PipelineModel (saved with "
                "model.save(path)) or a pyspark.mllib model (saved with model.save(sc, path)), "
                f"got {kind}"
            )
            raise DeployError(msg)
        if not callable(getattr(type(model), "load", None)):
            msg = (f"pyspark_model ({kind}) has no load() class method, so a replica could not "
                   "load it back; deploy a model class that PySpark can load")
            raise DeployError(msg)
        if api_name == "mllib" and not isinstance(self.sc, SparkContext):
            msg = (
                f"Saving the pyspark.mllib model {kind} needs sc, the SparkContext it was "
                f"trained with (spark.sparkContext), got {type(self.sc).__name__}"
            )
            raise DeployError(msg)
        try:
            if api_name == "ml":
                model.save(path)
            else:
                model.save(self.sc, path)
        except Exception as exc:
            msg = f"Could not save the PySpark model {kind}: {exc}"
            raise DeployError(msg) from exc
        return {"model_class": kind, "api": api_name}

    def load(self, bundle: Bundle) -> Predictor:
        func = bundle.load_function()
        spark = start_spark_session()
        cls = _import_class(bundle.extra["model_class"])
        path = (bundle.path / MODEL_DIR).absolute().as_uri()
        if bundle.extra["api"] == "ml":
            model = cls.load(path)
        else:
            model = cls.load(spark.sparkContext, path)
        return functools.partial(func, spark, model)


def deploy_pyspark_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    func: Callable[..., Any],
    pyspark_model: Any,
    sc: Any,
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Deploy ``func(spark, model, inputs)`` with a PySpark model saved by PySpark itself."""
    api.deploy(PySparkDeployer(sc), clipper_conn, name, version, input_type, func,
               pyspark_model, base_image, labels, registry, num_replicas, batch_size,
               pkgs_to_install)


def create_endpoint(
    clipper_conn: ClipperConnection,
    name: str,
    input_type: str,
    func: Callable[..., Any],
    pyspark_model: Any,
    sc: Any,
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
    """Register an application, deploy the PySpark model under the same name and link them."""
    api.create_endpoint(
        deploy_pyspark_model, clipper_conn, name, input_type, default_output, version,
        slo_micros, func=func, pyspark_model=pyspark_model, sc=sc, base_image=base_image,
        labels=labels, registry=registry, num_replicas=num_replicas, batch_size=batch_size,
        pkgs_to_install=pkgs_to_install,
    )
