"""The deployer interface and the model bundle format.

A **model bundle** is a directory that every backend runs the same way::

    bundle.json     {"format": 1, "deployer": "pytorch", "deployer_version": "...",
                     "input_type": "doubles", "python": "3.11", "packages": [...], ...}
    func.pkl        the user's prediction function, cloudpickled
    ...             whatever the deployer saved (framework weights, a SavedModel...)
    modules/        (optional) local modules added to sys.path before loading

A :class:`Deployer` writes a bundle on the client (:meth:`Deployer.save`) and turns it back into
a predict callable inside the replica (:meth:`Deployer.load`). :func:`deploy` and
:func:`create_endpoint` are what every ``deploy_<framework>_model`` function calls.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import json
import pickle
import shutil
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.machinery import PathFinder
from importlib.metadata import packages_distributions
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

import attrs
import cloudpickle

from clipper_core.exceptions import DeployError
from clipper_core.types import InputType

if TYPE_CHECKING:
    from clipper_core.admin.connection import ClipperConnection

BUNDLE_FORMAT = 1
BUNDLE_FILE = "bundle.json"
FUNC_FILE = "func.pkl"

#: A loaded model: takes the batch of inputs (spec §4.5 shapes) and returns one output each.
Predictor = Callable[[Any], Sequence[Any]]


@attrs.frozen
class Bundle:
    """A model bundle on disk, as described by its ``bundle.json``."""

    path: Path
    deployer: str
    input_type: InputType
    python: str
    packages: tuple[str, ...] = ()
    #: Deployer-specific metadata (e.g. the model class a PySpark model is loaded with).
    extra: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def read(cls, path: str | Path) -> Bundle:
        path = Path(path)
        meta_file = path / BUNDLE_FILE
        if not meta_file.is_file():
            msg = (
                f"{path} is not a model bundle: it has no {BUNDLE_FILE}. Create bundles with a "
                "deployer function such as deploy_python_closure"
            )
            raise DeployError(msg)
        meta = json.loads(meta_file.read_text())
        return cls(
            path=path,
            deployer=meta["deployer"],
            input_type=InputType.parse(meta["input_type"]),
            python=meta.get("python", ""),
            packages=tuple(meta.get("packages", ())),
            extra=meta.get("extra", {}),
        )

    def write(self) -> None:
        meta = {
            "format": BUNDLE_FORMAT,
            "deployer": self.deployer,
            "input_type": self.input_type.canonical,
            "python": self.python,
            "packages": list(self.packages),
            "extra": self.extra,
        }
        (self.path / BUNDLE_FILE).write_text(json.dumps(meta, indent=2))

    def load_function(self) -> Callable[..., Any]:
        """Unpickle ``func.pkl`` (with ``modules/`` on ``sys.path``)."""
        modules = self.path / "modules"
        if modules.is_dir() and str(modules) not in sys.path:
            sys.path.insert(0, str(modules))
        with (self.path / FUNC_FILE).open("rb") as f:
            return load_pickle(f)


#: cloudpickle's constructors of what it pickles by value and tracks by id: loaded in the
#: process that pickled them, they refill the live class with the pickled copy of its methods.
_TRACKED_CONSTRUCTORS = frozenset({"_make_skeleton_class", "_make_skeleton_enum",
                                   "_make_typevar"})


class _DetachedUnpickler(pickle.Unpickler):
    """Rebuilds classes pickled by value as classes of their own, whatever this process has."""

    def find_class(self, module: str, name: str) -> Any:
        found = super().find_class(module, name)
        if module.partition(".")[0] == "cloudpickle" and name in _TRACKED_CONSTRUCTORS:
            return _detached(found)
        return found


def _detached(make: Callable[..., Any]) -> Callable[..., Any]:
    """``make`` with the tracker id moved to a namespace of its own (one copy per class)."""
    signature = inspect.signature(make)
    if "class_tracker_id" not in signature.parameters:
        return make

    @functools.wraps(make)
    def build(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        tracker_id = bound.arguments.get("class_tracker_id")
        if tracker_id is not None:
            bound.arguments["class_tracker_id"] = f"clipper-load-{tracker_id}"
        return make(*bound.args, **bound.kwargs)

    return build


def load_pickle(file: BinaryIO) -> Any:
    """Load a cloudpickle as a fresh replica would, even in the process that wrote it.

    cloudpickle, loading a class pickled by value in the process that defined it, refills the
    live class with the pickled methods (cloudpickle 3.1.3 and later also rename their source
    file to ``<dynamic-code>``, so ``inspect.getsource`` and ``torch.jit.script`` fail on it
    afterwards). Here such a class is loaded as a copy and the live one is left alone.
    """
    return _DetachedUnpickler(file).load()


def _installed(module: ModuleType, distributions: Mapping[str, Any]) -> bool:
    """True if a fresh interpreter imports ``module`` from the same place: stdlib or installed."""
    top = module.__name__.partition(".")[0]
    if top in sys.stdlib_module_names:
        return True
    if top not in distributions or top not in sys.modules:
        return False
    spec = PathFinder.find_spec(top)
    return spec is not None and spec.origin == getattr(sys.modules[top], "__file__", None)


def _local_modules(objects: Sequence[Any]) -> list[ModuleType]:
    """Modules defining ``objects`` (functions, classes) that a replica could not import by name.

    Installed distributions and the standard library are importable everywhere the bundle
    runs; a user's script, notebook or test module is not, so what it defines is pickled by value.
    """
    distributions = packages_distributions()
    found = {}
    for obj in objects:
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
        if module is not None and module.__name__ != "__main__" and not _installed(
                module, distributions):
            found[module.__name__] = module
    return list(found.values())


@contextmanager
def pickled_by_value(objects: Sequence[Any]) -> Iterator[None]:
    """Within the block, cloudpickle copies the local modules of ``objects`` by value."""
    registered = set(cloudpickle.list_registry_pickle_by_value())
    added = [m for m in _local_modules(objects) if m.__name__ not in registered]
    for module in added:
        cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        for module in added:
            cloudpickle.unregister_pickle_by_value(module)


def same_as_installed(distribution: str, fallback: str) -> str:
    """A requirement pinning ``distribution`` to the version installed here, else ``fallback``.

    Framework deployers use it for ``image_requirements``: a model saved with one release of
    its framework is loaded by the same release inside the image.
    """
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return f"{distribution}{fallback}"
    return f"{distribution}=={version.partition('+')[0]}"


class Deployer(ABC):
    """Saves one kind of model into a bundle and loads it back inside a replica."""

    #: Registry key, recorded in ``bundle.json`` (``python``, ``pytorch``...).
    name: ClassVar[str]
    #: How many leading arguments ``func`` takes before the inputs (``func(model, inputs)``: 1).
    func_extra_args: ClassVar[int] = 0
    #: pip requirements a Docker image of this deployer needs on top of clipper-core.
    image_requirements: ClassVar[tuple[str, ...]] = ()
    #: Debian packages the image needs (e.g. a JRE for PySpark).
    image_apt_packages: ClassVar[tuple[str, ...]] = ()
    #: Shell commands run at the end of the image build, after the plugin is installed.
    image_commands: ClassVar[tuple[str, ...]] = ()

    def check_function(self, func: Callable[..., Any]) -> None:
        """Fail at deploy time if ``func`` cannot take ``func_extra_args`` + 1 arguments."""
        if not callable(func):
            msg = f"func must be a callable taking a list of inputs, got {type(func).__name__}"
            raise DeployError(msg)
        expected = self.func_extra_args + 1
        try:
            inspect.signature(func).bind(*range(expected))
        except TypeError:
            msg = (
                f"The {self.name} deployer calls func with {expected} positional argument(s) "
                f"({self.describe_call()}), but {getattr(func, '__name__', func)!r} has "
                f"signature {inspect.signature(func)}"
            )
            raise DeployError(msg) from None
        except ValueError:  # builtins without a signature: let them through
            pass

    def describe_call(self) -> str:
        return "func(inputs)"

    @abstractmethod
    def save(self, bundle_dir: Path, model: Any) -> dict[str, Any]:
        """Save ``model`` (the framework object, or None) into ``bundle_dir``.

        Validate the object here and raise :class:`DeployError` saying what was expected.
        Return the metadata to keep in ``bundle.json``'s ``extra``.
        """

    @abstractmethod
    def load(self, bundle: Bundle) -> Predictor:
        """Inside the replica: load the bundle once and return the predict callable."""

    def replica_command(self, bundle: Bundle) -> tuple[list[str], dict[str, str]] | None:
        """``(argv, extra environment)`` of a process that serves ``bundle`` itself (a replica
        written in another language), run by the runtime instead of :meth:`load`; or None."""
        return None


def write_bundle(
    deployer: Deployer,
    bundle_dir: Path,
    input_type: str | InputType,
    func: Callable[..., Any],
    model: Any = None,
    pkgs_to_install: Sequence[str] | None = None,
) -> Bundle:
    """Validate and save ``func`` (and ``model``) as a bundle in ``bundle_dir``."""
    deployer.check_function(func)
    itype = InputType.parse(input_type)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    try:
        with pickled_by_value([func]):
            payload = cloudpickle.dumps(func)
    except Exception as exc:
        msg = (
            f"Could not serialize the prediction function with cloudpickle: {exc}. Framework "
            "objects must be passed to their deployer (e.g. deploy_pytorch_model), not captured "
            "by the function"
        )
        raise DeployError(msg) from exc
    (bundle_dir / FUNC_FILE).write_bytes(payload)
    extra = deployer.save(bundle_dir, model) or {}
    bundle = Bundle(
        path=bundle_dir,
        deployer=deployer.name,
        input_type=itype,
        python="{}.{}".format(*sys.version_info[:2]),
        packages=tuple(pkgs_to_install or ()),
        extra=extra,
    )
    bundle.write()
    return bundle


def deploy(
    deployer: Deployer,
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    func: Callable[..., Any],
    model: Any = None,
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Write a bundle with ``deployer`` and build and deploy it through ``clipper_conn``."""
    tmp = Path(tempfile.mkdtemp(prefix=f"clipper-{name}-"))
    try:
        write_bundle(deployer, tmp, input_type, func, model, pkgs_to_install)
        if base_image == "default":
            base_image = clipper_conn.cm.default_base_image(deployer.name)
        clipper_conn.build_and_deploy_model(
            name, version, input_type, str(tmp), base_image, labels, registry,
            num_replicas, batch_size, pkgs_to_install,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def create_endpoint(
    deploy_fn: Callable[..., None],
    clipper_conn: ClipperConnection,
    name: str,
    input_type: str,
    default_output: str = "None",
    version: Any = 1,
    slo_micros: int = 3000000,
    **deploy_kwargs: Any,
) -> None:
    """Register an app, deploy a model of the same name with ``deploy_fn`` and link them."""
    clipper_conn.register_application(name, input_type, default_output, slo_micros)
    deploy_fn(clipper_conn, name, version, input_type, **deploy_kwargs)
    clipper_conn.link_model_to_app(name, name)
