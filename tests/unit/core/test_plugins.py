import re
import sys
import types
from pathlib import Path

import pytest

from clipper_core import hookimpl, hookspecs, plugins
from clipper_core.exceptions import PluginError

DOCS = Path(__file__).parents[3] / "docs" / "plugins" / "hooks.md"


def _plugin_module(name, deployer_name):
    module = types.ModuleType(name)

    class Fake:
        pass

    Fake.name = deployer_name

    @hookimpl
    def clipper_register_deployers():
        return [Fake]

    module.clipper_register_deployers = clipper_register_deployers
    return module, Fake


def test_builtins_register_through_the_hooks():
    pm = plugins.get_plugin_manager(load_entrypoints=False)
    assert "python" in plugins.deployers(pm).names()
    names = [row["name"] for row in plugins.list_plugins(pm)]
    assert set(plugins.DEFAULT_PLUGINS) <= set(names)


def test_a_third_party_plugin_adds_a_deployer():
    pm = plugins.get_plugin_manager(load_entrypoints=False)
    module, fake = _plugin_module("thirdparty", "xgboost")
    pm.register(module, name="deployer-xgboost")
    registry = plugins.deployers(pm)
    assert registry.get("xgboost") is fake
    assert registry.providers["xgboost"] == "deployer-xgboost"


def test_duplicate_names_name_both_plugins():
    pm = plugins.get_plugin_manager(load_entrypoints=False)
    pm.register(_plugin_module("one", "python")[0], name="deployer-one")
    with pytest.raises(PluginError, match=r"'clipper_core.deployers.python' and 'deployer-one'|'deployer-one' and 'clipper_core.deployers.python'"):
        plugins.deployers(pm)


def test_unknown_name_lists_installed_and_the_package_to_install():
    pm = plugins.get_plugin_manager(load_entrypoints=False)
    with pytest.raises(PluginError, match=r"installed: .*python.*pip install clipper-deployer-pytorch"):
        plugins.deployers(pm).get("pytorch")


def test_class_without_a_name_is_rejected():
    pm = plugins.get_plugin_manager(load_entrypoints=False)
    module, fake = _plugin_module("nameless", "x")
    del fake.name
    pm.register(module, name="nameless")
    with pytest.raises(PluginError, match="without a 'name' class attribute"):
        plugins.deployers(pm)


def test_disable_plugins_blocks_a_builtin(monkeypatch):
    monkeypatch.setenv("CLIPPER_DISABLE_PLUGINS", "clipper_core.deployers.python, other")
    pm = plugins.get_plugin_manager(load_entrypoints=False)
    assert "python" not in plugins.deployers(pm).names()
    assert plugins.disabled_plugins() == ["clipper_core.deployers.python", "other"]


def test_every_hook_is_documented_with_its_signature():
    text = DOCS.read_text()
    specs = [name for name in dir(hookspecs) if name.startswith("clipper_")]
    assert specs
    for name in specs:
        assert re.search(rf"^## `{name}\(\)`", text, re.M), f"{name} missing from {DOCS}"
    assert sys.modules["clipper_core.hookspecs"] is hookspecs
