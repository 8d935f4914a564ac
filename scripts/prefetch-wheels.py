"""Put what each plugin session of ``noxfile.py`` installs into pip's cache, installing nothing,
so that the session's own install later reads from disk: the downloads from the index, and the
wheels built from source distributions (PySpark's). scripts/warm-up.sh runs it while the
``tests`` session runs.

One ``pip wheel`` per plugin, with what its session installs: the prerequisites the
noxfile names, clipper-core's dependencies and test extra, and the plugin's with its test extra.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import noxfile  # noqa: E402  (the sessions' prerequisites live there)

PREREQUISITES = {**noxfile.PLUGIN_PREREQUISITES,
                 "clipper-deployer-mxnet": noxfile.MXNET_PREREQUISITES}


def requirements(project: Path) -> list[str]:
    """A project's dependencies and test extra, without clipper-core (not on the index)."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    reqs = [*meta.get("dependencies", []), *meta.get("optional-dependencies", {}).get("test", [])]
    return [r for r in reqs if not r.startswith("clipper-core")]


def main() -> int:
    core = requirements(ROOT)
    failed = []
    for plugin in sorted(p.name for p in (ROOT / "plugins").iterdir()
                         if (p / "pyproject.toml").is_file()):
        reqs = [*PREREQUISITES.get(plugin, []), *core, *requirements(ROOT / "plugins" / plugin)]
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="clipper-prefetch-") as dest:
            done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q",
                                   "--progress-bar", "off", "--disable-pip-version-check",
                                   "-w", dest, *reqs], check=False)
        outcome = "done" if done.returncode == 0 else f"pip failed ({done.returncode})"
        print(f"[prefetch-wheels] {plugin}: {outcome} in {time.monotonic() - start:.0f} s",
              flush=True)
        if done.returncode:
            failed.append(plugin)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
