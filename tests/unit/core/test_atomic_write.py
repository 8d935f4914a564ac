"""cluster.json (and the local backend's spec and pid files) are replaced atomically."""

import subprocess
import sys

from clipper_core.config import ClusterConfig

FULL_DISK = """
import resource, signal, sys
from clipper_core.config import ClusterConfig
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))  # a disk that fills after 200 bytes
try:
    ClusterConfig(cluster_name="new-" + "x" * 300).write(sys.argv[1])
except OSError as exc:
    print("write failed:", exc)
"""


def test_a_failed_write_leaves_the_old_cluster_json_intact(tmp_path):
    path = tmp_path / "cluster.json"
    ClusterConfig(cluster_name="old").write(path)
    result = subprocess.run([sys.executable, "-c", FULL_DISK, str(path)], capture_output=True,
                            text=True, timeout=60)
    assert "write failed" in result.stdout, result.stderr
    assert ClusterConfig.from_file(path).cluster_name == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.json"]
