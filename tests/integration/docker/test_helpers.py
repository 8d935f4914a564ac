"""The Docker backend's pure helpers (no engine needed)."""

from __future__ import annotations

import socket
import zipfile
from pathlib import Path

from clipper_core.backends.docker import find_unbound_port, is_default_frontend_image
from clipper_core.backends.docker_images import (
    _missing_requirements,
    _wheel_requirements,
    image_tag,
)


def test_image_tags_name_the_base_image_unless_default() -> None:
    assert image_tag("server", "python:3.11-slim") == "clipper/server:0.5.0"
    assert image_tag("server", "clipper/base:bookworm") == (
        "clipper/server:0.5.0-clipper-base-bookworm")


def test_the_original_frontend_images_mean_our_server_image() -> None:
    assert is_default_frontend_image("clipper/query_frontend:develop")
    assert is_default_frontend_image("myreg:5000/ns/management_frontend")
    assert is_default_frontend_image(None)
    assert not is_default_frontend_image("me/my-frontend:1")


def test_find_unbound_port_prefers_the_requested_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        busy = sock.getsockname()[1]
        sock.listen()
        other = find_unbound_port(busy)
        assert other != busy
        assert 10000 <= other <= 50000
    assert find_unbound_port(busy) == busy


def _wheel(path: Path, name: str, requires: list[str]) -> None:
    with zipfile.ZipFile(path / f"{name}-1.0-py3-none-any.whl", "w") as zf:
        meta = "".join(f"Requires-Dist: {r}\n" for r in requires)
        zf.writestr(f"{name}-1.0.dist-info/METADATA", f"Name: {name}\nVersion: 1.0\n{meta}")


def test_missing_requirements_are_evaluated_for_the_image_python(tmp_path: Path) -> None:
    _wheel(tmp_path, "redis", ['async-timeout>=4.0.3; python_full_version < "3.11.3"',
                               'pywin32>=304; sys_platform == "win32"',
                               'hiredis>=1; extra == "hiredis"', "six"])
    _wheel(tmp_path, "six", [])
    env = {"python_full_version": "3.11.2", "python_version": "3.11", "sys_platform": "linux",
           "implementation_name": "cpython", "os_name": "posix", "platform_machine": "x86_64",
           "platform_python_implementation": "CPython", "platform_release": "",
           "platform_system": "Linux", "platform_version": "", "implementation_version": "3.11.2"}
    assert _missing_requirements(tmp_path, env) == ["async-timeout>=4.0.3"]
    assert _missing_requirements(tmp_path, {**env, "python_full_version": "3.11.7"}) == []


def test_an_images_requirements_include_the_extras_it_installs(tmp_path: Path) -> None:
    _wheel(tmp_path, "core", ['numpy>=1.21', 'tomli; python_version < "3.11"',
                              'opentelemetry-sdk>=1.20; extra == "tracing"',
                              'pytest>=8; extra == "test"'])
    wheel = tmp_path / "core-1.0-py3-none-any.whl"
    assert _wheel_requirements(wheel) == ["numpy>=1.21", 'tomli; python_version < "3.11"']
    assert _wheel_requirements(wheel, ("tracing",)) == [
        "numpy>=1.21", "opentelemetry-sdk>=1.20", 'tomli; python_version < "3.11"']
