"""The plugin manager factory and the registries built from it.

Order of :func:`get_plugin_manager`: add the hook specs, block the plugins named in
``CLIPPER_DISABLE_PLUGINS`` (comma-separated entry-point names), load the ``clipper``
entry points, register the built-in plugins (:data:`DEFAULT_PLUGINS`), check that every
implementation matches a spec.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs
import pluggy

from clipper_core import hookspecs
from clipper_core.exceptions import PluginError

if TYPE_CHECKING:
    from clipper_core.backends.api import ContainerManager
    from clipper_core.cache.api import PredictionCache
    from clipper_core.deployers.api import Deployer
    from clipper_core.selection.api import SelectionPolicy
    from clipper_core.store.api import StateStore

#: The entry-point group third-party plugins register under.
ENTRY_POINT_GROUP = "clipper"

#: Built-in plugins: modules registered through the same hooks a third party implements.
DEFAULT_PLUGINS = (
    "clipper_core.deployers.python",
    "clipper_core.backends.local",
    "clipper_core.backends.docker",
    "clipper_core.store.sqlite",
    "clipper_core.store.redis",
    "clipper_core.cache.lru",
    "clipper_core.selection.default",
    "clipper_core.selection.bandits",
    "clipper_core.selection.ensembles",
)

#: Where users find the plugin that provides a name they asked for but do not have.
KNOWN_PLUGIN_PACKAGES = {
    ("deployer", "pytorch"): "clipper-deployer-pytorch",
    ("deployer", "tensorflow"): "clipper-deployer-tensorflow",
    ("deployer", "mxnet"): "clipper-deployer-mxnet",
    ("deployer", "pyspark"): "clipper-deployer-pyspark",
    ("deployer", "onnx"): "clipper-deployer-onnx",
    ("backend", "kubernetes"): "clipper-backend-k8s",
}

T = TypeVar("T")


def disabled_plugins() -> list[str]:
    """Entry-point names listed in ``CLIPPER_DISABLE_PLUGINS``."""
    raw = os.environ.get("CLIPPER_DISABLE_PLUGINS", "")
    return [name.strip() for name in raw.split(",") if name.strip()]


def get_plugin_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    """Build a fresh plugin manager with the built-in plugins and the installed ones."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in disabled_plugins():
        pm.set_blocked(name)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for module_name in DEFAULT_PLUGINS:
        if not pm.is_blocked(module_name):
            pm.register(importlib.import_module(module_name), name=module_name)
    pm.check_pending()
    return pm


@functools.cache
def default_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use (not at import time)."""
    return get_plugin_manager()


@attrs.frozen
class Registry(Generic[T]):
    """Classes of one kind (deployer, backend...) keyed by their ``name`` attribute."""

    kind: str
    classes: dict[str, type[T]]
    providers: dict[str, str]

    @classmethod
    def build(cls, kind: str, hook: Any) -> Registry[Any]:
        """Call a registration hook and index what every plugin returned."""
        classes: dict[str, type[Any]] = {}
        providers: dict[str, str] = {}
        for impl in reversed(hook.get_hookimpls()):
            for klass in impl.function() or ():
                name = getattr(klass, "name", None)
                if not isinstance(name, str) or not name:
                    msg = (
                        f"Plugin {impl.plugin_name!r} registered {kind} {klass!r} without a "
                        "'name' class attribute; set name = '<short name>' on the class"
                    )
                    raise PluginError(msg)
                if name in classes:
                    msg = (
                        f"Two plugins register a {kind} named {name!r}: "
                        f"{providers[name]!r} and {impl.plugin_name!r}. Uninstall one, or "
                        "block one with CLIPPER_DISABLE_PLUGINS"
                    )
                    raise PluginError(msg)
                classes[name] = klass
                providers[name] = impl.plugin_name
        return cls(kind, classes, providers)

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; the error lists what is installed."""
        try:
            return self.classes[name]
        except KeyError:
            installed = ", ".join(sorted(self.classes)) or "none"
            package = KNOWN_PLUGIN_PACKAGES.get((self.kind, name))
            hint = f" Install it with: pip install {package}." if package else ""
            msg = f"No {self.kind} named {name!r} is installed (installed: {installed}).{hint}"
            raise PluginError(msg) from None

    def names(self) -> list[str]:
        return sorted(self.classes)


def _registry(kind: str, hook_name: str, pm: pluggy.PluginManager | None) -> Registry[Any]:
    manager = pm or default_plugin_manager()
    return Registry.build(kind, getattr(manager.hook, hook_name))


def deployers(pm: pluggy.PluginManager | None = None) -> Registry[Deployer]:
    return _registry("deployer", "clipper_register_deployers", pm)


def backends(pm: pluggy.PluginManager | None = None) -> Registry[ContainerManager]:
    return _registry("backend", "clipper_register_backends", pm)


def selection_policies(pm: pluggy.PluginManager | None = None) -> Registry[SelectionPolicy]:
    return _registry("selection policy", "clipper_register_selection_policies", pm)


def caches(pm: pluggy.PluginManager | None = None) -> Registry[PredictionCache]:
    return _registry("cache", "clipper_register_caches", pm)


def stores(pm: pluggy.PluginManager | None = None) -> Registry[StateStore]:
    return _registry("store", "clipper_register_stores", pm)


def list_plugins(pm: pluggy.PluginManager | None = None) -> list[dict[str, str]]:
    """What ``clipper plugins`` prints: each plugin, its distribution and what it registers."""
    manager = pm or default_plugin_manager()
    dists = {id(plugin): f"{dist.project_name}=={dist.version}"
             for plugin, dist in manager.list_plugin_distinfo()}
    rows = []
    registries = (deployers(manager), backends(manager), selection_policies(manager),
                  caches(manager), stores(manager))
    for name, plugin in manager.list_name_plugin():
        provides = [f"{reg.kind} {cls_name}" for reg in registries
                    for cls_name, provider in reg.providers.items() if provider == name]
        rows.append({
            "name": name,
            "distribution": dists.get(id(plugin), "clipper-core (built-in)"),
            "provides": ", ".join(provides),
        })
    return rows
