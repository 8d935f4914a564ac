"""The project's images: built offline from host-resolved wheels, reused when up to date."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clipper_core import hookimpl
from clipper_core.backends.docker_images import ImageBuilder, image_tag
from clipper_core.deployers.api import Bundle, Deployer, Predictor
from clipper_core.exceptions import BackendError
from clipper_core.plugins import get_plugin_manager

pytestmark = pytest.mark.docker


class AptAndPipDeployer(Deployer):
    """A framework deployer as a plugin declares it: its image needs a pip and an apt package."""

    name = "h4-image-test"
    image_requirements = ("six",)
    image_apt_packages = ("jq",)

    def save(self, bundle_dir: Path, model: Any) -> dict[str, Any]:
        return {}

    def load(self, bundle: Bundle) -> Predictor:
        return bundle.load_function()


class _Plugin:
    @hookimpl
    def clipper_register_deployers(self) -> list[type[Deployer]]:
        return [AptAndPipDeployer]


def test_deployer_image_has_the_declared_packages(docker_engine: Any) -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(_Plugin(), name="h4-image-test-plugin")
    tag = ImageBuilder(pm=pm).deployer("h4-image-test")
    assert tag == image_tag("h4-image-test-closure", "clipper/base:bookworm")
    out = docker_engine.containers.run(
        tag, ["sh", "-c", "jq --version && python -c 'import six, clipper_core.runtime; "
              "import os; print(os.environ[\"CLIPPER_MODEL_PATH\"])'"], remove=True).decode()
    assert out.startswith("jq-")
    assert out.strip().endswith("/model")


def test_an_up_to_date_image_is_reused_and_force_rebuilds(docker_engine: Any) -> None:
    tag = ImageBuilder().redis()
    lines: list[str] = []
    assert ImageBuilder(progress=lines.append).redis() == tag
    assert lines == [f"Image {tag} is up to date"]
    lines.clear()
    ImageBuilder(progress=lines.append, force=True).redis()
    assert f"Building image {tag}" in lines
    assert lines[-1] == f"Successfully tagged {tag}"


def test_core_image_has_dependencies_for_its_own_python(docker_engine: Any) -> None:
    # The base's Python (3.11.2) needs async-timeout for redis; the host's may not: the
    # markers are evaluated for the image, not for the host.
    core = ImageBuilder().core()
    out = docker_engine.containers.run(
        core, ["python", "-c", "import platform, async_timeout, redis, zmq, clipper_core; "
               "print(platform.python_version())"], remove=True).decode()
    assert out.strip() == "3.11.2"


def test_images_build_command(docker_engine: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "clipper_core.cli", "images", "build", "server", "redis"],
        capture_output=True, text=True, timeout=600, check=True)
    assert f"server: {image_tag('server', 'clipper/base:bookworm')}" in result.stdout
    assert f"redis: {image_tag('redis', 'clipper/base:bookworm')}" in result.stdout


def test_a_missing_base_image_says_how_to_make_one(docker_engine: Any) -> None:
    builder = ImageBuilder(base_image="clipper/does-not-exist:never")
    with pytest.raises(BackendError, match=r"cannot be pulled.*scripts/build-base-image\.sh"):
        builder.server()


def test_images_see_only_their_own_venv(docker_engine: Any) -> None:
    """The runtime of every image is the venv /opt/clipper: the base image's global
    site-packages (Debian's dist-packages, pip's /usr/local) are never on its sys.path."""
    out = docker_engine.containers.run(
        ImageBuilder().closure(), ["python", "-c", "import json, sys; print(json.dumps(sys.path))"],
        remove=True).decode()
    packages = [p for p in json.loads(out) if p.endswith(("site-packages", "dist-packages"))]
    assert packages and all(p.startswith("/opt/clipper/") for p in packages), packages
