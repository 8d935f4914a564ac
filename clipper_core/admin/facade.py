"""What the ``clipper_admin`` facade modules are made of: names provided by plugins.

The seeds import framework deployers and the Kubernetes manager from ``clipper_admin``; here
they live in plugins. :func:`plugin_functions` re-exports a plugin's functions, or, when the
plugin is not installed, stand-ins with the same names that raise a ClipperException naming
the package to ``pip install``. :func:`backend_class` does the same for container managers.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from clipper_core.exceptions import ClipperException


def _missing(import_name: str, distribution: str, reason: str) -> str:
    return (f"This needs the plugin {distribution} (module {import_name}), which {reason}. "
            f"Install it with: pip install {distribution}")


def _import_plugin(import_name: str, distribution: str) -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module(import_name), ""
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == import_name or import_name.startswith(exc.name + ".")):
            return None, _missing(import_name, distribution, "is not installed")
        return None, _missing(import_name, distribution, f"failed to import: {exc}")
    except ImportError as exc:
        return None, _missing(import_name, distribution, f"failed to import: {exc}")


def _stand_in(name: str, message: str) -> Callable[..., Any]:
    def stand_in(*args: Any, **kwargs: Any) -> Any:
        raise ClipperException(f"{name}: {message}")

    stand_in.__name__ = stand_in.__qualname__ = name
    stand_in.__doc__ = message
    return stand_in


def plugin_functions(namespace: dict[str, Any], import_name: str, distribution: str,
                     names: list[str]) -> None:
    """Put ``names`` from plugin module ``import_name`` into ``namespace`` (a module's globals)."""
    module, message = _import_plugin(import_name, distribution)
    for name in names:
        namespace[name] = getattr(module, name) if module is not None else _stand_in(name,
                                                                                      message)
    namespace["__all__"] = list(names)


def backend_class(public_name: str, backend_name: str) -> type:
    """A class whose instances are the backend registered as ``backend_name``.

    ``KubernetesContainerManager(...)`` looks ``kubernetes`` up in the backend registry when
    called, so a missing plugin raises a ClipperException that says what to ``pip install``.
    """

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        return _resolve(backend_name)(*args, **kwargs)

    return type(public_name, (), {"__new__": __new__,
                                  "__doc__": f"The {backend_name!r} container manager."})


@functools.cache
def _resolve(backend_name: str) -> type:
    from clipper_core.plugins import backends

    return backends().get(backend_name)
