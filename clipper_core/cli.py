"""The ``clipper`` command: run and inspect a local (embedded default) cluster.

Exit codes: 0 success, 1 error (message on stderr), 2 usage error. ``clipper status`` exits 1
when the cluster is not running.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import requests

from clipper_core.admin.connection import ClipperConnection
from clipper_core.backends.local import LocalContainerManager
from clipper_core.exceptions import ClipperError

QUICKSTART_APP = "hello-world"
QUICKSTART_MODEL = "sum-model"
#: Seconds quickstart waits for the model's replica to connect.
QUICKSTART_WAIT_S = 60.0


def feature_sum(xs: Any) -> list[str]:
    """The seeds' example model: the sum of each feature vector."""
    return [str(sum(x)) for x in xs]


class CommandError(Exception):
    """A failure reported as ``clipper: error: <message>`` with exit code 1."""


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Left-aligned columns separated by two spaces."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def _manager(args: argparse.Namespace) -> LocalContainerManager:
    return LocalContainerManager(
        cluster_name=args.cluster_name, clipper_query_port=args.query_port,
        clipper_management_port=args.management_port, clipper_rpc_port=args.rpc_port,
        redis_ip=args.redis_ip, redis_port=args.redis_port, cluster_dir=args.cluster_dir)


def _connect(args: argparse.Namespace) -> ClipperConnection:
    """Connect to the running cluster (restarting its server process if it died)."""
    conn = ClipperConnection(_manager(args))
    conn.connect()
    return conn


def cmd_start(args: argparse.Namespace) -> int:
    conn = ClipperConnection(_manager(args))
    conn.start_clipper(cache_size=args.cache_size)
    _print_addresses(conn)
    return 0


def _print_addresses(conn: ClipperConnection) -> None:
    cm = conn.cm
    print(f"Cluster {cm.cluster_name} is running\n"
          f"  query API:       http://{cm.get_query_addr()}\n"
          f"  management API:  http://{cm.get_admin_addr()}\n"
          f"  cluster dir:     {getattr(cm, 'cluster_dir', '')}")


def cmd_stop(args: argparse.Namespace) -> int:
    cm = _manager(args)
    if cm.server_pid() is None and not cm.replica_processes() and not cm.config_path.exists():
        raise CommandError(f"Cluster {cm.cluster_name} is not running (cluster dir "
                           f"{cm.cluster_dir})")
    cm.stop_all(graceful=not args.kill, keep_state=args.keep_state)
    kept = " (state kept: `clipper start` resumes it)" if args.keep_state else ""
    print(f"Cluster {cm.cluster_name} stopped{kept}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cm = _manager(args)
    pid = cm.server_pid()
    if pid is None:
        print(f"Cluster {cm.cluster_name} is not running (cluster dir {cm.cluster_dir})",
              file=sys.stderr)
        return 1
    conn = _connect(args)
    apps = conn.get_all_apps(verbose=True)
    models = conn.get_all_models(verbose=True)
    connected = conn.get_all_model_replicas()
    processes = cm.replica_processes()
    _print_addresses(conn)
    print(f"  server pid:      {pid}\n"
          f"  applications:    {len(apps)}\n"
          f"  model versions:  {len(models)}\n"
          f"  replicas:        {sum(p['alive'] for p in processes)} running, "
          f"{len(connected)} connected")
    return 0


def cmd_apps(args: argparse.Namespace) -> int:
    apps = _connect(args).get_all_apps(verbose=True)
    rows = [(a["name"], a["input_type"], a["latency_slo_micros"], a["default_output"],
             ",".join(a["linked_models"]) or "-") for a in apps]
    print(table(rows, ("APPLICATION", "INPUT TYPE", "SLO (µs)", "DEFAULT OUTPUT", "MODEL")))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    conn = _connect(args)
    rows = []
    for m in conn.get_all_models(verbose=True):
        rows.append((m["model_name"], m["model_version"], m["input_type"],
                     "*" if m["is_current_version"] else "",
                     conn.cm.get_num_replicas(m["model_name"], m["model_version"]),
                     m["container_name"]))
    print(table(rows, ("MODEL", "VERSION", "INPUT TYPE", "CURRENT", "REPLICAS", "IMAGE")))
    return 0


def cmd_replicas(args: argparse.Namespace) -> int:
    conn = _connect(args)
    connected = conn.get_all_model_replicas(verbose=True)
    cm = conn.cm
    assert isinstance(cm, LocalContainerManager)
    rows = [(p["model_name"], p["model_version"], p["index"], p["pid"] or "-",
             "running" if p["alive"] else "dead", p["log"]) for p in cm.replica_processes()]
    print(table(rows, ("MODEL", "VERSION", "REPLICA", "PID", "STATE", "LOG")))
    print(f"{len(connected)} replica(s) connected to the query frontend")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    try:
        value = json.loads(args.json)
    except json.JSONDecodeError as exc:
        raise CommandError(f"JSON argument is not valid JSON ({exc}); e.g. "
                           "'[1.1, 2.2]' or '{\"input_batch\": [[1.0], [2.0]]}'") from None
    body = value if isinstance(value, dict) else {"input": value}
    if args.version is not None:
        body["version"] = args.version
    conn = _connect(args)
    url = f"http://{conn.get_query_addr()}/{args.app}/predict"
    r = requests.post(url, json=body, timeout=60)
    if r.status_code != 200:
        raise CommandError(f"{url} answered {r.status_code}: {r.text}")
    print(r.text)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    for path in _connect(args).get_clipper_logs(args.dir):
        print(path)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from clipper_core.plugins import list_plugins

    rows = [(p["name"], p["distribution"], p["provides"] or "-") for p in list_plugins()]
    print(table(rows, ("PLUGIN", "DISTRIBUTION", "PROVIDES")))
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    """The seeds' quickstart on the embedded default; reuses whatever already exists."""
    from clipper_admin.deployers import python as python_deployer

    cm = _manager(args)
    conn = ClipperConnection(cm)
    if cm.server_pid() is not None or cm.config_path.exists():
        conn.connect()
    else:
        conn.start_clipper()
    if QUICKSTART_APP not in conn.get_all_apps():
        conn.register_application(name=QUICKSTART_APP, input_type="doubles",
                                  default_output="-1.0", slo_micros=100000)
    if f"{QUICKSTART_MODEL}:1" not in conn.get_all_models():
        python_deployer.deploy_python_closure(conn, name=QUICKSTART_MODEL, version=1,
                                              input_type="doubles", func=feature_sum)
    elif conn.get_num_replicas(QUICKSTART_MODEL, 1) == 0:
        conn.set_num_replicas(QUICKSTART_MODEL, 1, version=1)
    if QUICKSTART_MODEL not in conn.get_linked_models(QUICKSTART_APP):
        conn.link_model_to_app(app_name=QUICKSTART_APP, model_name=QUICKSTART_MODEL)
    _wait_for_replica(conn)
    _print_addresses(conn)
    print("\nTry it:\n  curl -X POST --header \"Content-Type:application/json\" "
          f"-d '{{\"input\": [1.1, 2.2, 3.3]}}' {conn.get_query_addr()}/{QUICKSTART_APP}/predict")
    print(f"Stop it with: clipper stop --cluster-name {cm.cluster_name}")
    return 0


def _wait_for_replica(conn: ClipperConnection) -> None:
    deadline = time.monotonic() + QUICKSTART_WAIT_S
    while time.monotonic() < deadline:
        if any(r.startswith(f"{QUICKSTART_MODEL}:1:") for r in conn.get_all_model_replicas()):
            return
        time.sleep(0.2)
    raise CommandError(f"The replica of {QUICKSTART_MODEL}:1 did not connect within "
                       f"{QUICKSTART_WAIT_S:g} s; see `clipper logs`")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("cluster")
    group.add_argument("--cluster-name", default="default-cluster")
    group.add_argument("--cluster-dir", default=None,
                       help="default: $CLIPPER_HOME/<cluster name> (CLIPPER_HOME: ~/.clipper)")
    group.add_argument("--query-port", type=int, default=1337)
    group.add_argument("--management-port", type=int, default=1338)
    group.add_argument("--rpc-port", type=int, default=7000)
    group.add_argument("--redis-ip", default=None, help="use this Redis instead of SQLite")
    group.add_argument("--redis-port", type=int, default=6379)

    parser = argparse.ArgumentParser(
        prog="clipper", description="Run and inspect a local Clipper cluster.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("start", cmd_start, "start the cluster (resumes its saved state)")
    p.add_argument("--cache-size", type=int, default=33554432, help="bytes (default 32 MiB)")
    p = add("stop", cmd_stop, "stop the cluster's server and replicas")
    p.add_argument("--kill", action="store_true", help="SIGKILL instead of a graceful stop")
    p.add_argument("--keep-state", action="store_true",
                   help="keep applications, models and links for the next `clipper start`")
    add("status", cmd_status, "show whether the cluster runs and what it holds")
    add("apps", cmd_apps, "list applications")
    add("models", cmd_models, "list model versions")
    add("replicas", cmd_replicas, "list replica processes")
    p = add("predict", cmd_predict, "send one query to an application")
    p.add_argument("app")
    p.add_argument("json", help="the input (e.g. '[1.1, 2.2]') or a whole request body")
    p.add_argument("--version", default=None, help="query this model version")
    p = add("logs", cmd_logs, "copy every log of the cluster into a directory")
    p.add_argument("--dir", default="clipper_logs/")
    add("plugins", cmd_plugins, "list installed plugins and what they provide")
    add("quickstart", cmd_quickstart,
        "start the cluster with app hello-world served by model sum-model")
    from clipper_core.backends.docker_images import add_images_parser

    add_images_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ClipperError, CommandError, OSError, requests.RequestException) as exc:
        print(f"clipper: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
