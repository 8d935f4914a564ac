"""The Docker images the project builds, with no image registry and no package index in builds.

Images (Dockerfiles in ``clipper_core/images/``, also linked from ``docker/``)::

    clipper/core:<v>               base image + clipper-core[tracing] in /opt/clipper (a venv)
    clipper/server:<v>             python -m clipper_core.server --from-env (query / management)
    clipper/python-closure:<v>     python -m clipper_core.runtime, CLIPPER_MODEL_PATH=/model
    clipper/<deployer>-closure:<v> the same runtime with a framework deployer's plugin and
                                   packages, FROM the base image (framework layers first)
    clipper/redis:<v>              Debian's redis-server
    clipper/noop-container:<version>   the original's test model: "1.0" to every input
    clipper/python-closure-container:<version>, clipper/python3{5,6,7}-closure-container:<version>
                                   the original's names of clipper/python-closure

``<v>`` is clipper-core's version, suffixed with the base image's name unless the base is the
default ``python:3.11-slim``. The base image is a parameter: ``CLIPPER_BASE_IMAGE`` or the
``base_image`` argument. Python packages are resolved on the host (``pip wheel``) into the
build context and installed with ``pip --no-index``; Debian packages come from apt inside the
build. Every image carries a label with a digest of its inputs (Dockerfile, parent image, source
tree, requirements); an image whose digest matches is reused, anything else is rebuilt.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import clipper_core
from clipper_core.exceptions import BackendError

DEFAULT_BASE_IMAGE = "python:3.11-slim"
IMAGE_PREFIX = "clipper"
#: Label holding the digest of an image's build inputs.
IMAGE_KEY_LABEL = "ai.clipper.image.key"
#: Label holding the ``major.minor`` Python version of an image built here.
IMAGE_PYTHON_LABEL = "ai.clipper.python"
#: The original's closure base images: other names of clipper/python-closure (whatever Python
#: the base image has), tagged ``clipper/<name>:<version>``.
CLOSURE_ALIASES = ("python-closure-container", "python35-closure-container",
                   "python36-closure-container", "python37-closure-container")
#: clipper-core's extras installed in clipper/core: the frontends in containers can trace.
CORE_EXTRAS = ("tracing",)
#: The images ``clipper images build`` builds by default.
DEFAULT_IMAGES = ("server", "python-closure", "redis", "noop-container", *CLOSURE_ALIASES)
#: Lines of a failed build's log quoted in the error.
LOG_TAIL = 25

Progress = Callable[[str], None]

#: Directories never copied into a wheel build (anywhere in the tree).
_IGNORED = (".git", ".nox", ".venv", "build", "dist", "__pycache__", "*.egg-info", ".pytest_cache",
            ".ruff_cache", ".hypothesis", ".mypy_cache")
#: Top-level directories of the clipper-core checkout that are not part of its wheel.
_CORE_ROOT_IGNORED = {"tests", "bench", "plugins", "docs", "rclipper", "docker", "scripts"}


def docker_client() -> Any:
    """A client of the local Docker engine (``DOCKER_HOST`` etc.), or a clear error."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        msg = (
            f"Cannot reach the Docker engine ({exc}). Start it (as root: "
            "scripts/ensure-docker.sh installs and starts dockerd) or point DOCKER_HOST at one"
        )
        raise BackendError(msg) from exc
    return client


def default_base_image() -> str:
    """``$CLIPPER_BASE_IMAGE`` or ``python:3.11-slim``."""
    return os.environ.get("CLIPPER_BASE_IMAGE") or DEFAULT_BASE_IMAGE


def image_tag(repository: str, base_image: str) -> str:
    """``clipper/<repository>:<version>[-<base image slug>]``."""
    tag = clipper_core.__version__
    if base_image != DEFAULT_BASE_IMAGE:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", base_image).strip("-.")
        tag = f"{tag}-{slug}"[:128]
    return f"{IMAGE_PREFIX}/{repository}:{tag}"


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _tree_digest(root: Path, ignore: Callable[[str, list[str]], Iterable[str]]) -> str:
    """Digest of every file under ``root`` that a copy with ``ignore`` would take."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        skipped = set(ignore(dirpath, dirnames + filenames))
        dirnames[:] = sorted(d for d in dirnames if d not in skipped)
        for name in sorted(f for f in filenames if f not in skipped):
            path = Path(dirpath, name)
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _ignore_for(root: Path, extra_root_ignored: set[str]) -> Callable[[str, list[str]], set[str]]:
    base = shutil.ignore_patterns(*_IGNORED)

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = set(base(directory, names))
        if Path(directory) == root:
            ignored |= extra_root_ignored & set(names)
        return ignored | {n for n in names if n.endswith((".pyc", ".pyo"))}

    return ignore


class _Source:
    """Where a distribution's wheel comes from: a source tree on this machine, or the index."""

    def __init__(self, dist_name: str, module: str) -> None:
        self.dist_name = dist_name
        self.version = importlib.metadata.version(dist_name)
        self.root = self._find_root(module)
        extra = _CORE_ROOT_IGNORED if dist_name == "clipper-core" else set()
        self.ignore = _ignore_for(self.root, extra) if self.root else None

    def _find_root(self, module: str) -> Path | None:
        path = Path(importlib.import_module(module).__file__ or ".").resolve().parent
        for candidate in (path, *path.parents[:3]):
            pyproject = candidate / "pyproject.toml"
            if not pyproject.is_file():
                continue
            match = re.search(r'^name\s*=\s*"([^"]+)"', pyproject.read_text(), re.M)
            if match and canonicalize_name(match[1]) == canonicalize_name(self.dist_name):
                return candidate
        return None

    def digest(self) -> str:
        if self.root is None or self.ignore is None:
            return f"{self.dist_name}=={self.version}"
        return _tree_digest(self.root, self.ignore)

    def build_wheel(self, out: Path, progress: Progress) -> Path:
        """Build (from the source tree) or download (from the index) this distribution's wheel."""
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="clipper-wheel-") as tmp:
            if self.root is not None:
                src = Path(tmp, "src")
                shutil.copytree(self.root, src, ignore=self.ignore)
                progress(f"Building the {self.dist_name} wheel from {self.root}")
                args = ["wheel", "--no-deps", "-w", tmp, str(src)]
            else:
                progress(f"Downloading the {self.dist_name}=={self.version} wheel")
                args = ["download", "--no-deps", "--only-binary=:all:", "-d", tmp,
                        f"{self.dist_name}=={self.version}"]
            _pip(args, progress)
            wheels = list(Path(tmp).glob("*.whl"))
            if len(wheels) != 1:
                msg = f"Expected one wheel of {self.dist_name} in {tmp}, found {wheels}"
                raise BackendError(msg)
            return Path(shutil.copy2(wheels[0], out))


def _pip(args: Sequence[str], progress: Progress) -> None:
    """Run pip on the host, streaming its output to ``progress``; raise with the tail on failure."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        progress(line.rstrip())
    if proc.wait() != 0:
        tail = "\n".join(lines[-LOG_TAIL:])
        msg = (f"pip failed on the host while preparing wheels for an image "
               f"({' '.join(cmd[3:])}):\n{tail}")
        raise BackendError(msg)


def _wheel_metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return zf.read(name).decode()


def _wheel_requirements(wheel: Path, extras: Sequence[str] = ()) -> list[str]:
    """The ``Requires-Dist`` entries of a wheel that need no extra or one of ``extras`` (the
    extra's marker dropped)."""
    found = []
    for line in _wheel_metadata(wheel).splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        entry = line.split(":", 1)[1].strip()
        if "extra ==" not in entry:
            found.append(entry)
            continue
        req = Requirement(entry)
        if req.marker is not None and any(req.marker.evaluate({"extra": extra})
                                          for extra in extras):
            req.marker = None
            found.append(str(req))
    return sorted(found)


def _missing_requirements(wheelhouse: Path, env: dict[str, str]) -> list[str]:
    """Requirements of the wheels in ``wheelhouse`` that apply in ``env`` but have no wheel."""
    present = {canonicalize_name(w.name.split("-", 1)[0]) for w in wheelhouse.glob("*.whl")}
    missing = {}
    for wheel in wheelhouse.glob("*.whl"):
        for line in _wheel_metadata(wheel).splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
                continue
            name = canonicalize_name(req.name)
            if name not in present:
                req.marker = None
                missing[name] = str(req)
    return sorted(missing.values())


#: Prints the PEP 508 marker environment of the Python running it (as packaging computes it).
_MARKER_ENV_SCRIPT = """
import json, os, platform, sys
impl = sys.implementation
v = impl.version
iv = "%d.%d.%d" % (v.major, v.minor, v.micro)
if v.releaselevel != "final":
    iv += v.releaselevel[0] + str(v.serial)
print(json.dumps({
    "implementation_name": impl.name, "implementation_version": iv,
    "os_name": os.name, "platform_machine": platform.machine(),
    "platform_release": platform.release(), "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform}))
"""


def cache_dir() -> Path:
    """``$CLIPPER_CACHE_DIR`` or ``~/.cache/clipper``: resolved dependency wheels live here."""
    return Path(os.environ.get("CLIPPER_CACHE_DIR") or Path.home() / ".cache" / "clipper")


class ImageBuilder:
    """Builds the project's images on demand and reuses the ones that are up to date."""

    def __init__(
        self,
        client: Any = None,
        base_image: str | None = None,
        progress: Progress | None = None,
        force: bool = False,
        pm: Any = None,
    ) -> None:
        self._client = client
        self._pm = pm
        self.base_image = base_image or default_base_image()
        self.progress: Progress = progress or (lambda line: None)
        self.force = force
        self._done: dict[str, str] = {}
        self._environments: dict[str, dict[str, str]] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker_client()
        return self._client

    # -- the project's images ---------------------------------------------------------------

    def core(self) -> str:
        """clipper/core: the base image with clipper-core installed offline."""
        if "core" in self._done:
            return self._done["core"]
        source = _Source("clipper-core", "clipper_core")
        base_id = self.ensure_present(self.base_image)
        tag = image_tag("core", self.base_image)
        dockerfile = _template("core")
        key = _digest("core", dockerfile, base_id, source.digest())
        if not self._up_to_date(tag, key):
            with tempfile.TemporaryDirectory(prefix="clipper-image-") as ctx:
                python = self.python_version(self.base_image)
                core_wheel = source.build_wheel(Path(ctx, "wheels"), self.progress)
                self._dependency_wheels(Path(ctx, "deps"), core_wheel, self.base_image)
                Path(ctx, "Dockerfile").write_text(dockerfile)
                self._build(ctx, tag, key, {"BASE_IMAGE": self.base_image}, python)
        self._done["core"] = tag
        return tag

    def server(self) -> str:
        """clipper/server: the frontends (``python -m clipper_core.server --from-env``)."""
        return self._child("server", self.core(), "CORE_IMAGE")

    def closure(self) -> str:
        """clipper/python-closure: the model runtime for bundles of the python deployer."""
        return self._child("python-closure", self.core(), "CORE_IMAGE")

    def noop(self) -> str:
        """clipper/noop-container:<version>: the original's test model ("1.0" to every input)."""
        return self._original_name(self._child("noop-container", self.core(), "CORE_IMAGE"),
                                   "noop-container")

    def _original_name(self, image: str, repository: str) -> str:
        """Tag ``image`` also as ``clipper/<repository>:<version>``, as the original named it."""
        tag = f"{IMAGE_PREFIX}/{repository}:{clipper_core.__version__}"
        if tag != image:
            self.client.images.get(image).tag(f"{IMAGE_PREFIX}/{repository}",
                                              clipper_core.__version__)
        return tag

    def redis(self) -> str:
        """clipper/redis: Debian's redis-server on the base image."""
        return self._child("redis", self.ensure_present(self.base_image), "BASE_IMAGE",
                           parent_ref=self.base_image)

    def deployer(self, deployer_name: str) -> str:
        """The image bundles of ``deployer_name`` run in (built from the plugin's declarations).

        It is built FROM the base image with what changes least first (apt packages, then the
        framework's wheels and every dependency, then clipper-core and the plugin), so that
        Docker's build cache keeps the framework's layers when only clipper-core changes.
        """
        if deployer_name == "python":
            return self.closure()
        if deployer_name in self._done:
            return self._done[deployer_name]
        from clipper_core.plugins import default_plugin_manager, deployers

        pm = self._pm or default_plugin_manager()
        registry = deployers(pm)
        klass = registry.get(deployer_name)
        dist_name = _distribution_of(registry.providers[deployer_name], pm)
        core = _Source("clipper-core", "clipper_core")
        sources = [core] + ([_Source(dist_name, klass.__module__)] if dist_name else [])
        requirements = list(klass.image_requirements)
        apt = " ".join(klass.image_apt_packages)
        commands = " && ".join(klass.image_commands)
        tag = image_tag(f"{deployer_name}-closure", self.base_image)
        dockerfile = _template("deployer")
        key = _digest("deployer", dockerfile, self.ensure_present(self.base_image), requirements,
                      apt, commands, [source.digest() for source in sources])
        if not self._up_to_date(tag, key):
            with tempfile.TemporaryDirectory(prefix="clipper-image-") as ctx:
                python = self.python_version(self.base_image)
                deps, wheels = Path(ctx, "deps"), Path(ctx, "wheels")
                # The local wheels sit among the dependencies while pip resolves them all.
                local = [source.build_wheel(deps, self.progress) for source in sources]
                self.requirement_wheels(
                    [f"{source.dist_name}=={source.version}" for source in sources]
                    + requirements, deps, self.base_image)
                wheels.mkdir()
                for wheel in local:
                    wheel.rename(wheels / wheel.name)
                Path(ctx, "Dockerfile").write_text(dockerfile)
                self._build(ctx, tag, key, {"BASE_IMAGE": self.base_image, "APT_PACKAGES": apt,
                                              "IMAGE_COMMANDS": commands},
                            python)
        self._done[deployer_name] = tag
        return tag

    def _builders(self) -> dict[str, Callable[[], str]]:
        return {"core": self.core, "server": self.server, "python-closure": self.closure,
                "redis": self.redis, **self._original_images()}

    def _original_images(self) -> dict[str, Callable[[], str]]:
        """Builders of the images under the original's names (``clipper/<name>:<version>``)."""
        images = {"noop-container": self.noop}
        for alias in CLOSURE_ALIASES:
            images[alias] = functools.partial(self._closure_alias, alias)
        return images

    def _closure_alias(self, repository: str) -> str:
        return self._original_name(self.closure(), repository)

    def build(self, images: Iterable[str] = DEFAULT_IMAGES) -> dict[str, str]:
        """Build the named images (those of :data:`DEFAULT_IMAGES`, ``core`` or a deployer
        name) and return ``{name: tag}``."""
        builders = self._builders()
        return {name: builders[name]() if name in builders else self.deployer(name)
                for name in images}

    def _original_image(self, image: str) -> Callable[[], str] | None:
        """The builder of ``image`` if it is ``clipper/<original name>:<version>``."""
        repository, _, tag = image.rpartition(":")
        name = repository.removeprefix(f"{IMAGE_PREFIX}/")
        if tag != clipper_core.__version__ or name == repository:
            return None
        return self._original_images().get(name)

    # -- helpers shared with the model images -----------------------------------------------

    def requirement_wheels(self, requirements: Sequence[str], out: Path, image: str) -> None:
        """Resolve ``requirements`` on the host into wheels in ``out`` for ``image``'s Python.

        pip evaluates environment markers for the host, so dependencies the image's Python
        needs and the host's does not (``async-timeout; python_full_version < "3.11.3"``) are
        added afterwards by evaluating every wheel's markers in the image's environment.
        """
        if not requirements:
            return
        env = self.marker_environment(image)
        self.progress(f"Resolving {', '.join(requirements)} on the host for Python "
                      f"{env['python_full_version']}")
        todo = list(requirements)
        while todo:
            self._fetch(todo, out, env)
            todo = _missing_requirements(out, env)

    def _fetch(self, requirements: Sequence[str], out: Path, env: dict[str, str]) -> None:
        links = ["--find-links", str(out)]
        if env["python_version"] == "{}.{}".format(*sys.version_info[:2]):
            _pip(["wheel", "-w", str(out), *links, *requirements], self.progress)
        else:
            _pip(["download", "--only-binary=:all:", "--python-version",
                  env["python_full_version"], "-d", str(out), *links, *requirements],
                 self.progress)

    def marker_environment(self, image: str) -> dict[str, str]:
        """The PEP 508 marker environment of the image's ``python3`` (run once per image)."""
        image_id = self._image_id(image)
        if image_id not in self._environments:
            out = self.client.containers.run(image, ["python3", "-c", _MARKER_ENV_SCRIPT],
                                             remove=True, entrypoint=[])
            self._environments[image_id] = json.loads(out.decode())
        return self._environments[image_id]

    def python_version(self, image: str) -> str:
        """``major.minor`` of the image's ``python3``."""
        return self.marker_environment(image)["python_version"]

    def ensure_present(self, image: str) -> str:
        """Return the image's id; a missing image is built if it has one of the original's
        names (``clipper/noop-container:<version>``...), else pulled, and if that fails the
        error says what to do."""
        import docker.errors

        try:
            return self.client.images.get(image).id
        except docker.errors.ImageNotFound:
            pass
        builder = self._original_image(image)
        if builder is not None:
            self.progress(f"Image {image} is not present; building it")
            builder()
            return self.client.images.get(image).id
        self.progress(f"Image {image} is not present; pulling it")
        try:
            return self.client.images.pull(image).id
        except docker.errors.APIError as exc:
            msg = (
                f"Image {image} is not present and cannot be pulled ({exc.explanation or exc}). "
                "Build a local base image with scripts/build-base-image.sh and set "
                "CLIPPER_BASE_IMAGE=clipper/base:bookworm (or pass base_image=...), or load "
                "the image with `docker load`"
            )
            raise BackendError(msg) from exc

    def build_context(self, ctx: str, tag: str, labels: dict[str, str] | None = None,
                      buildargs: dict[str, str] | None = None) -> str:
        """``docker build`` the directory ``ctx`` as ``tag``, streaming the log; return the id."""
        import docker.errors

        self.progress(f"Building image {tag}")
        lines: list[str] = []
        image_id = None
        try:
            stream = self.client.api.build(
                path=ctx, tag=tag, buildargs=buildargs or {}, labels=labels or {}, rm=True,
                forcerm=True, decode=True, pull=False)
            for chunk in stream:
                if "stream" in chunk:
                    for line in chunk["stream"].splitlines():
                        if line.strip():
                            lines.append(line)
                            self.progress(line)
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                if "error" in chunk:
                    lines.append(chunk["error"].strip())
                    raise BackendError(_build_failure(tag, lines))
        except docker.errors.APIError as exc:
            lines.append(str(exc.explanation or exc))
            raise BackendError(_build_failure(tag, lines)) from exc
        if image_id is None:
            image_id = self.client.images.get(tag).id
        return image_id

    # -- internals --------------------------------------------------------------------------

    def _child(self, name: str, parent: str, arg: str, parent_ref: str | None = None) -> str:
        """An image whose context is only its Dockerfile, FROM ``parent``."""
        if name in self._done:
            return self._done[name]
        tag = image_tag(name, self.base_image)
        dockerfile = _template(name)
        key = _digest(name, dockerfile, self._image_id(parent))
        if not self._up_to_date(tag, key):
            python = self.python_version(parent)
            with tempfile.TemporaryDirectory(prefix="clipper-image-") as ctx:
                Path(ctx, "Dockerfile").write_text(dockerfile)
                self._build(ctx, tag, key, {arg: parent_ref or parent}, python)
        self._done[name] = tag
        return tag

    def _image_id(self, image: str) -> str:
        return self.client.images.get(image).id

    def _up_to_date(self, tag: str, key: str) -> bool:
        import docker.errors

        if self.force:
            return False
        try:
            labels = self.client.images.get(tag).labels or {}
        except docker.errors.ImageNotFound:
            return False
        if labels.get(IMAGE_KEY_LABEL) == key:
            self.progress(f"Image {tag} is up to date")
            return True
        return False

    def _build(self, ctx: str, tag: str, key: str, buildargs: dict[str, str],
               python: str) -> None:
        import docker.errors

        try:
            previous = self.client.images.get(tag).id
        except docker.errors.ImageNotFound:
            previous = None
        new = self.build_context(ctx, tag, {IMAGE_KEY_LABEL: key, IMAGE_PYTHON_LABEL: python},
                                 buildargs)
        if previous and previous != new:
            # The outdated image lost its tag; drop it unless containers still use it.
            try:
                self.client.images.remove(previous)
            except docker.errors.APIError:
                pass

    def _dependency_wheels(self, out: Path, core_wheel: Path, image: str) -> None:
        """Wheels of clipper-core's dependencies for ``image``, cached on the host per
        (requirements, marker environment)."""
        requirements = _wheel_requirements(core_wheel, CORE_EXTRAS)
        cached = cache_dir() / "wheelhouse" / _digest(
            requirements, self.marker_environment(image))[:16]
        if not (cached / ".complete").is_file():
            tmp = Path(tempfile.mkdtemp(prefix="wheelhouse-", dir=_mkdir(cached.parent)))
            self.requirement_wheels(requirements, tmp, image)
            (tmp / ".complete").write_text("\n".join(requirements))
            if cached.exists():
                shutil.rmtree(cached)
            tmp.rename(cached)
        else:
            self.progress(f"Using cached dependency wheels from {cached}")
        out.mkdir(parents=True, exist_ok=True)
        for wheel in cached.glob("*.whl"):
            shutil.copy2(wheel, out)
        (out / "requirements.txt").write_text("\n".join(requirements) + "\n")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _template(name: str) -> str:
    return (resources.files("clipper_core") / "images" / f"{name}.Dockerfile").read_text()


def _build_failure(tag: str, lines: list[str]) -> str:
    tail = "\n".join(lines[-LOG_TAIL:])
    return (f"Building image {tag} failed. Last lines of the build log:\n{tail}\n"
            "Fix the cause above (a package that does not install, a missing file) and retry")


def _distribution_of(plugin_name: str, pm: Any) -> str | None:
    """The distribution that installed a plugin (None for the built-in ones)."""
    plugin = pm.get_plugin(plugin_name)
    for registered, dist in pm.list_plugin_distinfo():
        if registered is plugin:
            return dist.metadata["name"]
    return None


def build_images(
    images: Iterable[str] = DEFAULT_IMAGES,
    base_image: str | None = None,
    progress: Progress | None = print,
    force: bool = False,
) -> dict[str, str]:
    """Build the project's images (and those of the named deployers); return ``{name: tag}``."""
    return ImageBuilder(base_image=base_image, progress=progress, force=force).build(images)


def add_images_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``clipper images build`` to the ``clipper`` command's subparsers."""
    images = subparsers.add_parser(
        "images", help="build the Docker images of the project",
        description="Build the Docker images of the project (from clipper_core/images).")
    actions = images.add_subparsers(dest="images_command", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build", help="build images that are missing or out of date",
        description="Build images that are missing or out of date, showing the build log.")
    build.add_argument("names", nargs="*", metavar="IMAGE",
                       help=f"server, python-closure, redis, core or a deployer name "
                            f"(default: {' '.join(DEFAULT_IMAGES)})")
    build.add_argument("--base-image", default=None,
                       help=f"image to build FROM (default: $CLIPPER_BASE_IMAGE or "
                            f"{DEFAULT_BASE_IMAGE})")
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build.set_defaults(func=images_cli)
    return images


def images_cli(args: argparse.Namespace) -> int:
    """``clipper images build [IMAGE...] [--base-image B] [--force]``."""
    tags = build_images(args.names or DEFAULT_IMAGES, args.base_image, print, args.force)
    for name, tag in tags.items():
        print(f"{name}: {tag}")
    return 0
