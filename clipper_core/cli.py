"""The ``clipper`` command: run and inspect a cluster on any backend.

The backend comes from ``--backend`` (a name of the backend registry: ``local``, ``docker``,
``kubernetes`` alias ``k8s``), else from the record ``clipper start`` wrote for the cluster
(``$CLIPPER_HOME/cli/<cluster>.json``), else ``local``. Backend constructor arguments are given
with ``--option KEY=VALUE`` and remembered in the same record.

Exit codes: 0 success, 1 error (message on stderr), 2 usage error. ``clipper status`` exits 1
when the cluster is not running.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from clipper_core import plugins
from clipper_core.admin.connection import ClipperConnection, http_url
from clipper_core.backends.api import ContainerManager
from clipper_core.backends.local import LocalContainerManager
from clipper_core.config import clipper_home
from clipper_core.exceptions import ClipperError

QUICKSTART_APP = "hello-world"
QUICKSTART_MODEL = "sum-model"
#: Seconds ``quickstart`` and ``deploy`` wait for a model's replicas to connect.
REPLICA_WAIT_S = 120.0
#: Short names the CLI accepts for registry names.
BACKEND_ALIASES = {"k8s": "kubernetes"}
#: CLI options that map onto the constructor arguments every built-in backend shares.
_MANAGER_OPTIONS = {"query_port": "clipper_query_port",
                    "management_port": "clipper_management_port",
                    "rpc_port": "clipper_rpc_port", "redis_ip": "redis_ip",
                    "redis_port": "redis_port", "cluster_dir": "cluster_dir"}

stderr = Console(stderr=True)


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


def _emit(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    """Print ``data`` as JSON with ``--json``, else the human form ``text()``."""
    print(json.dumps(data, indent=2, default=str) if args.json else text())


# -- which backend, which cluster ---------------------------------------------------------------
def record_path(cluster_name: str) -> Path:
    """Where ``clipper start`` remembers a cluster's backend and its options."""
    return clipper_home() / "cli" / f"{cluster_name}.json"


def _read_record(cluster_name: str) -> dict[str, Any]:
    path = record_path(cluster_name)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CommandError(f"Cannot read {path} ({exc}); delete it and pass --backend") from None


def _option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _key_values(items: Sequence[str], what: str, example: str,
                form: str = "KEY=VALUE") -> dict[str, Any]:
    """``KEY=VALUE`` arguments as a dict, each value read as JSON when it parses."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"{what} {item!r} is not {form} (e.g. {example})")
        pairs[key.replace("-", "_")] = _option_value(value)
    return pairs


def _given_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {param: getattr(args, opt) for opt, param in _MANAGER_OPTIONS.items()
               if getattr(args, opt) is not None}
    options.update(_key_values(args.option, "--option", "--option docker_network=my_net"))
    return options


def _backend_and_options(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    record = _read_record(args.cluster_name)
    backend = BACKEND_ALIASES.get(args.backend, args.backend) or record.get("backend", "local")
    options = dict(record.get("options", {})) if record.get("backend") == backend else {}
    options.update(_given_options(args))
    return backend, options


def _manager(args: argparse.Namespace) -> ContainerManager:
    """The container manager of the chosen backend, built from the registry."""
    backend, options = _backend_and_options(args)
    cls = plugins.backends().get(backend)
    accepted = inspect.signature(cls.__init__).parameters
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        names = ", ".join(p for p in accepted if p not in ("self", "cluster_name"))
        raise CommandError(f"The {backend} backend has no option {', '.join(unknown)}; "
                           f"its options are: {names}")
    return cls(cluster_name=args.cluster_name, **options)


def _remember(args: argparse.Namespace, cm: ContainerManager) -> None:
    _, options = _backend_and_options(args)
    path = record_path(args.cluster_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"backend": cm.name, "options": options}, indent=2))


def _connect(args: argparse.Namespace) -> ClipperConnection:
    """Connect to the running cluster (a local one's dead server process is restarted)."""
    conn = ClipperConnection(_manager(args))
    conn.connect()
    return conn


def _has_cluster(cm: ContainerManager) -> bool:
    """True if the backend has anything of this cluster running (or, locally, saved)."""
    if isinstance(cm, LocalContainerManager):
        return (cm.server_pid() is not None or bool(cm.replica_processes())
                or cm.config_path.exists())
    try:
        cm.connect()
    except ClipperError:
        return False
    return True


# -- progress -----------------------------------------------------------------------------------
class BuildProgress(logging.Handler):
    """Turns the ``clipper`` logger's image-build lines into one rich progress bar per image.

    ``Building image X`` opens a bar; Docker's ``Step N/M`` lines advance it; other lines show
    as the bar's latest message.
    """

    _STEP = re.compile(r"Step (\d+)/(\d+)")

    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.INFO)
        self.progress = progress
        self.task: TaskID | None = None
        self.image = ""

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage().partition("] ")[2] or record.getMessage()
        if line.startswith("Building image "):
            self.image = line.removeprefix("Building image ")
            self.task = self.progress.add_task(self.image, total=None)
            return
        if self.task is None:
            self.progress.console.print(line, style="dim", markup=False, highlight=False)
            return
        step = self._STEP.search(line)
        if step:
            self.progress.update(self.task, completed=int(step[1]) - 1, total=int(step[2]))
        self.progress.update(self.task, description=f"{self.image}: {line[:60]}")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    console=stderr, transient=False)


def _with_build_progress(action: Callable[[], None]) -> None:
    """Run ``action`` showing the image builds it logs as progress bars."""
    logger = logging.getLogger("clipper")
    with _progress() as progress:
        handler = BuildProgress(progress)
        logger.addHandler(handler)
        try:
            action()
        finally:
            logger.removeHandler(handler)
            if handler.task is not None:
                task = progress.tasks[-1]
                progress.update(handler.task, completed=task.total or 1, total=task.total or 1,
                                description=handler.image)


def wait_for_replicas(conn: ClipperConnection, model: str, version: str, wanted: int,
                      timeout_s: float = REPLICA_WAIT_S) -> None:
    """Wait until ``wanted`` replicas of ``model:version`` are connected, with a progress bar."""
    prefix = f"{model}:{version}:"
    deadline = time.monotonic() + timeout_s
    with _progress() as progress:
        task = progress.add_task(f"replicas of {model}:{version} connected", total=wanted)
        while True:
            connected = sum(r.startswith(prefix) for r in conn.get_all_model_replicas())
            progress.update(task, completed=min(connected, wanted))
            if connected >= wanted:
                return
            if time.monotonic() > deadline:
                raise CommandError(
                    f"{connected} of {wanted} replica(s) of {model}:{version} connected within "
                    f"{timeout_s:g} s; see `clipper logs` for the replicas' logs")
            time.sleep(0.25)


# -- commands -----------------------------------------------------------------------------------
def cmd_start(args: argparse.Namespace) -> int:
    conn = ClipperConnection(_manager(args))
    _with_build_progress(lambda: conn.start_clipper(cache_size=args.cache_size))
    _remember(args, conn.cm)
    _print_addresses(args, conn)
    return 0


def _addresses(conn: ClipperConnection) -> dict[str, Any]:
    cm = conn.cm
    info = {"cluster": cm.cluster_name, "backend": cm.name,
            "query_api": http_url(cm, cm.get_query_addr()),
            "management_api": http_url(cm, cm.get_admin_addr())}
    # Elsewhere the management process does not know the query frontend's published port.
    query = "" if isinstance(cm, LocalContainerManager) else f"?query={info['query_api']}"
    info["dashboard"] = f"{info['management_api']}/dashboard{query}"
    if isinstance(cm, LocalContainerManager):
        info["cluster_dir"] = str(cm.cluster_dir)
    return info


def _print_addresses(args: argparse.Namespace, conn: ClipperConnection) -> None:
    info = _addresses(conn)
    _emit(args, info, lambda: _addresses_text(info))


def _addresses_text(info: dict[str, Any]) -> str:
    lines = [f"Cluster {info['cluster']} is running ({info['backend']} backend)",
             f"  query API:       {info['query_api']}",
             f"  management API:  {info['management_api']}",
             f"  dashboard:       {info['dashboard']}"]
    if "cluster_dir" in info:
        lines.append(f"  cluster dir:     {info['cluster_dir']}")
    return "\n".join(lines)


def cmd_stop(args: argparse.Namespace) -> int:
    cm = _manager(args)
    kwargs: dict[str, Any] = {"graceful": not args.kill}
    if args.keep_state:
        if "keep_state" not in inspect.signature(cm.stop_all).parameters:
            raise CommandError(f"The {cm.name} backend cannot keep a stopped cluster's state "
                               "(--keep-state); its state lives in its store")
        kwargs["keep_state"] = True
    if not _has_cluster(cm):
        raise CommandError(f"Cluster {cm.cluster_name} is not running ({cm.name} backend)")
    cm.stop_all(**kwargs)
    if not args.keep_state:
        record_path(args.cluster_name).unlink(missing_ok=True)
    kept = " (state kept: `clipper start` resumes it)" if args.keep_state else ""
    print(f"Cluster {cm.cluster_name} stopped{kept}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cm = _manager(args)
    if isinstance(cm, LocalContainerManager) and cm.server_pid() is None:
        print(f"Cluster {cm.cluster_name} is not running (cluster dir {cm.cluster_dir})",
              file=sys.stderr)
        return 1
    conn = ClipperConnection(cm)
    try:
        conn.connect()
    except ClipperError as exc:
        print(f"Cluster {cm.cluster_name} is not running ({exc})", file=sys.stderr)
        return 1
    info = _addresses(conn)
    info.update({"applications": len(conn.get_all_apps()),
                 "model_versions": len(conn.get_all_models()),
                 "replicas_connected": len(conn.get_all_model_replicas())})
    if isinstance(cm, LocalContainerManager):
        info["server_pid"] = cm.server_pid()

    def text() -> str:
        pid = f"\n  server pid:      {info['server_pid']}" if "server_pid" in info else ""
        return (f"{_addresses_text(info)}{pid}\n"
                f"  applications:    {info['applications']}\n"
                f"  model versions:  {info['model_versions']}\n"
                f"  replicas:        {info['replicas_connected']} connected")

    _emit(args, info, text)
    return 0


def cmd_apps(args: argparse.Namespace) -> int:
    apps = _connect(args).get_all_apps(verbose=True)
    rows = [(a["name"], a["input_type"], a["latency_slo_micros"], a["default_output"],
             ",".join(a["linked_models"]) or "-") for a in apps]
    _emit(args, apps, lambda: table(
        rows, ("APPLICATION", "INPUT TYPE", "SLO (µs)", "DEFAULT OUTPUT", "MODEL")))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    conn = _connect(args)
    models = conn.get_all_models(verbose=True)
    for m in models:
        m["num_replicas"] = conn.cm.get_num_replicas(m["model_name"], m["model_version"])
    rows = [(m["model_name"], m["model_version"], m["input_type"],
             "*" if m["is_current_version"] else "", m["num_replicas"], m["container_name"])
            for m in models]
    _emit(args, models, lambda: table(
        rows, ("MODEL", "VERSION", "INPUT TYPE", "CURRENT", "REPLICAS", "IMAGE")))
    return 0


def cmd_replicas(args: argparse.Namespace) -> int:
    conn = _connect(args)
    connected = conn.get_all_model_replicas(verbose=True)
    cm = conn.cm
    data: dict[str, Any] = {"connected": connected}
    if isinstance(cm, LocalContainerManager):
        data["processes"] = cm.replica_processes()
        rows = [(p["model_name"], p["model_version"], p["index"], p["pid"] or "-",
                 "running" if p["alive"] else "dead", p["log"]) for p in data["processes"]]
        header: tuple[str, ...] = ("MODEL", "VERSION", "REPLICA", "PID", "STATE", "LOG")
    else:
        data["running"] = [
            {"model_name": m["model_name"], "model_version": m["model_version"],
             "running": cm.get_num_replicas(m["model_name"], m["model_version"]),
             "connected": sum(r["model_id"] == f"{m['model_name']}:{m['model_version']}"
                              for r in connected)}
            for m in conn.get_all_models(verbose=True)]
        rows = [(r["model_name"], r["model_version"], r["running"], r["connected"])
                for r in data["running"]]
        header = ("MODEL", "VERSION", "RUNNING", "CONNECTED")
    _emit(args, data, lambda: table(rows, header)
          + f"\n{len(connected)} replica(s) connected to the query frontend")
    return 0


def _get_metrics(conn: ClipperConnection) -> dict[str, dict[str, dict[str, float]]]:
    """The query frontend's metrics grouped by app, by model version and internal."""
    grouped: dict[str, dict[str, dict[str, float]]] = {"apps": {}, "models": {}, "internal": {}}
    for entries in conn.inspect_instance().values():
        for entry in entries:
            for name, fields in entry.items():
                parts = name.split(":")
                if parts[0] == "app" and len(parts) >= 3:
                    group, key, metric = "apps", parts[1], ":".join(parts[2:])
                elif parts[0] == "model" and len(parts) >= 4:
                    group, key, metric = "models", f"{parts[1]}:{parts[2]}", ":".join(parts[3:])
                else:
                    group, key, metric = "internal", "cluster", ":".join(parts[1:])
                values = grouped[group].setdefault(key, {})
                for field, value in fields.items():
                    try:
                        values[f"{metric}.{field}"] = float(value)
                    except ValueError:
                        pass
    return grouped


_APP_COLUMNS = (("PREDICTIONS", "num_predictions.count"), ("P50 µs", "prediction_latency.p50"),
                ("P99 µs", "prediction_latency.p99"),
                ("DEFAULTS", "default_prediction_ratio.ratio"))
_MODEL_COLUMNS = (("PREDICTIONS", "num_predictions.count"), ("P99 µs", "prediction_latency.p99"),
                  ("BATCH", "batch_size.mean"), ("QUEUE", "queue_depth.value"),
                  ("REPLICAS", "num_replicas.value"), ("CACHE HIT", "cache_hit_ratio.ratio"),
                  ("ERRORS", "num_errors.count"))


def _fmt(value: float | None) -> str:
    if value is None or value != value:  # missing or nan
        return "-"
    return f"{value:.0f}" if value == int(value) else f"{value:.3g}"


def _metric_rows(group: dict[str, dict[str, float]], columns: Sequence[tuple[str, str]],
                 rates: dict[str, float] | None = None) -> list[list[str]]:
    rows = []
    for key, values in sorted(group.items()):
        row = [key, *(_fmt(values.get(field)) for _, field in columns)]
        if rates is not None:
            row.insert(1, _fmt(rates.get(key)))
        rows.append(row)
    return rows


def cmd_metrics(args: argparse.Namespace) -> int:
    grouped = _get_metrics(_connect(args))
    _emit(args, grouped, lambda: "\n\n".join((
        table(_metric_rows(grouped["apps"], _APP_COLUMNS),
              ("APPLICATION", *(c for c, _ in _APP_COLUMNS))),
        table(_metric_rows(grouped["models"], _MODEL_COLUMNS),
              ("MODEL", *(c for c, _ in _MODEL_COLUMNS))))))
    return 0


def _top_view(grouped: dict[str, dict[str, dict[str, float]]],
              rates: dict[str, dict[str, float]], cluster: str) -> Table:
    outer = Table.grid(padding=(1, 0))
    for title, group, columns in (("Applications", "apps", _APP_COLUMNS),
                                  ("Model versions", "models", _MODEL_COLUMNS)):
        inner = Table(title=f"{title} of {cluster}", title_justify="left", expand=False)
        for header in (title[:-1].upper(), "PRED/S", *(c for c, _ in columns)):
            inner.add_column(header, justify="left" if header.isalpha() else "right")
        for row in _metric_rows(grouped[group], columns, rates[group]):
            inner.add_row(*row)
        outer.add_row(inner)
    return outer


def cmd_top(args: argparse.Namespace) -> int:
    """A live view of predictions/s, latency, batch sizes and queues, refreshed every interval."""
    conn = _connect(args)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    previous: dict[str, dict[str, float]] = {"apps": {}, "models": {}}
    before = time.monotonic()
    grouped = _get_metrics(conn)
    count = 0

    def rates(now_grouped: dict[str, Any], elapsed: float) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for group in ("apps", "models"):
            out[group] = {}
            for key, values in now_grouped[group].items():
                total = values.get("num_predictions.count", 0.0)
                if key in previous[group] and elapsed > 0:
                    out[group][key] = (total - previous[group][key]) / elapsed
                previous[group][key] = total
        return out

    current = rates(grouped, 0.0)
    with Live(_top_view(grouped, current, conn.cm.cluster_name), console=console,
              auto_refresh=False, transient=False) as live:
        while not args.iterations or count < args.iterations:
            count += 1
            time.sleep(args.interval)
            grouped = _get_metrics(conn)
            now = time.monotonic()
            current = rates(grouped, now - before)
            before = now
            live.update(_top_view(grouped, current, conn.cm.cluster_name), refresh=True)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    try:
        value = json.loads(args.input)
    except json.JSONDecodeError as exc:
        raise CommandError(f"JSON argument is not valid JSON ({exc}); e.g. "
                           "'[1.1, 2.2]' or '{\"input_batch\": [[1.0], [2.0]]}'") from None
    body = value if isinstance(value, dict) else {"input": value}
    if args.version is not None:
        body["version"] = args.version
    conn = _connect(args)
    url = http_url(conn.cm, conn.get_query_addr(), f"/{args.app}/predict")
    r = requests.post(url, json=body, timeout=60, verify=conn.cm.tls_ca_file or True)
    if r.status_code != 200:
        raise CommandError(f"{url} answered {r.status_code}: {r.text}")
    print(r.text)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    token = _connect(args).cm.management_token
    if not token:
        raise CommandError("This cluster has no management token")
    print(token)
    return 0


def load_function(target: str) -> Callable[..., Any]:
    """``path/to/file.py:func`` -> the function, its module loaded from the file."""
    path_text, sep, func_name = target.rpartition(":")
    path = Path(path_text)
    if not sep or not func_name or path.suffix != ".py":
        raise CommandError(f"{target!r} is not FILE.py:FUNCTION (e.g. models/sum.py:predict)")
    if not path.is_file():
        raise CommandError(f"{path} does not exist")
    module_name = "clipper_deploy_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise CommandError(f"Importing {path} failed: {type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        found = ", ".join(n for n, v in vars(module).items()
                          if inspect.isfunction(v) and v.__module__ == module_name) or "none"
        raise CommandError(f"{path} has no function {func_name!r} (functions: {found})")
    return func


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy a function from a file as a model version; register and link the app if asked."""
    from clipper_admin.deployers import python as python_deployer

    func = load_function(args.target)
    conn = _connect(args)
    version = str(args.version)
    if args.app and args.app not in conn.get_all_apps():
        conn.register_application(name=args.app, input_type=args.input_type,
                                  default_output=args.default_output, slo_micros=args.slo_micros)
    _with_build_progress(lambda: python_deployer.deploy_python_closure(
        conn, name=args.name, version=version, input_type=args.input_type, func=func,
        num_replicas=args.replicas, batch_size=args.batch_size,
        pkgs_to_install=args.pkg or None))
    if args.app and args.name not in conn.get_linked_models(args.app):
        conn.link_model_to_app(app_name=args.app, model_name=args.name)
    wait_for_replicas(conn, args.name, version, args.replicas)
    info = {"model": args.name, "version": version, "replicas": args.replicas,
            "app": args.app, "predict_url": args.app and
            http_url(conn.cm, conn.get_query_addr(), f"/{args.app}/predict")}
    _emit(args, info, lambda: f"Deployed {args.name}:{version} ({args.replicas} replica(s))"
          + (f", linked to {args.app}: {info['predict_url']}" if args.app else ""))
    return 0


def cmd_set_version(args: argparse.Namespace) -> int:
    _connect(args).set_model_version(args.model, args.version)
    print(f"Model {args.model} is at version {args.version}")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    conn = _connect(args)
    version = args.version or conn.get_current_model_version(args.model)
    conn.set_num_replicas(args.model, args.replicas, version)
    wait_for_replicas(conn, args.model, version, args.replicas)
    print(f"Model {args.model}:{version} has {args.replicas} replica(s)")
    return 0


def cmd_policy(args: argparse.Namespace) -> int:
    """Show an application's selection policy and what it learned, or choose another."""
    conn = _connect(args)
    if args.policy is not None:
        params = _key_values(args.param, "--param", "--param gamma=0.1")
        conn.set_selection_policy(args.app, args.policy, **params)
    state = conn.get_selection_state(args.app, args.uid)

    def text() -> str:
        learned = state["learned"]
        params = " ".join(f"{k}={json.dumps(v)}" for k, v in state["params"].items()) or "-"
        return (f"application {args.app}: policy {state['policy']}\n"
                f"  parameters: {params}\n"
                f"  learned:    {json.dumps(learned['state']) if learned else 'nothing yet'}")

    _emit(args, state, text)
    return 0


def _traffic(args: argparse.Namespace, conn: ClipperConnection) -> int:
    traffic = conn.get_traffic(args.model)

    def text() -> str:
        split = " ".join(f"{v}={w:g}" for v, w in traffic["split"].items())
        return (f"model {args.model}: current version {traffic['current']}\n"
                f"  split:    {split or 'none (all queries to the current version)'}\n"
                f"  shadows:  {', '.join(traffic['shadows']) or 'none'}\n"
                f"  rollback: {traffic['previous'] or '-'}")

    _emit(args, traffic, text)
    return 0


def cmd_traffic(args: argparse.Namespace) -> int:
    """Show how a model's queries are split between its versions, or split them anew."""
    conn = _connect(args)
    if args.weights:
        weights = _key_values(args.weights, "weight", "1=95 2=5", "VERSION=WEIGHT")
        for version, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise CommandError(f"weight {version}={weight!r} is not a number (e.g. 1=95 2=5)")
        conn.set_traffic_split(args.model, weights)
    return _traffic(args, conn)


def cmd_shadow(args: argparse.Namespace) -> int:
    """Mirror a model's queries to other versions (none: stop mirroring)."""
    conn = _connect(args)
    conn.set_shadow_versions(args.model, args.versions)
    return _traffic(args, conn)


def cmd_promote(args: argparse.Namespace) -> int:
    conn = _connect(args)
    conn.promote_canary(args.model)
    return _traffic(args, conn)


def cmd_rollback(args: argparse.Namespace) -> int:
    conn = _connect(args)
    conn.rollback(args.model)
    return _traffic(args, conn)


def cmd_logs(args: argparse.Namespace) -> int:
    paths = _connect(args).get_clipper_logs(args.dir)
    _emit(args, paths, lambda: "\n".join(paths))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    listed = plugins.list_plugins()
    rows = [(p["name"], p["distribution"], p["provides"] or "-") for p in listed]
    _emit(args, listed, lambda: table(rows, ("PLUGIN", "DISTRIBUTION", "PROVIDES")))
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    """The seeds' quickstart; reuses whatever already exists."""
    from clipper_admin.deployers import python as python_deployer

    cm = _manager(args)
    conn = ClipperConnection(cm)
    if _has_cluster(cm):
        conn.connect()
    else:
        _with_build_progress(conn.start_clipper)
        _remember(args, cm)
    if QUICKSTART_APP not in conn.get_all_apps():
        conn.register_application(name=QUICKSTART_APP, input_type="doubles",
                                  default_output="-1.0", slo_micros=100000)
    if f"{QUICKSTART_MODEL}:1" not in conn.get_all_models():
        _with_build_progress(lambda: python_deployer.deploy_python_closure(
            conn, name=QUICKSTART_MODEL, version=1, input_type="doubles", func=feature_sum))
    elif conn.get_num_replicas(QUICKSTART_MODEL, 1) == 0:
        conn.set_num_replicas(QUICKSTART_MODEL, 1, version=1)
    if QUICKSTART_MODEL not in conn.get_linked_models(QUICKSTART_APP):
        conn.link_model_to_app(app_name=QUICKSTART_APP, model_name=QUICKSTART_MODEL)
    wait_for_replicas(conn, QUICKSTART_MODEL, "1", 1)
    _print_addresses(args, conn)
    if not args.json:
        print("\nTry it:\n  curl -X POST --header \"Content-Type:application/json\" "
              f"-d '{{\"input\": [1.1, 2.2, 3.3]}}' {conn.get_query_addr()}/{QUICKSTART_APP}"
              f"/predict\nStop it with: clipper stop --cluster-name {cm.cluster_name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print machine-readable JSON")
    common = argparse.ArgumentParser(add_help=False, parents=[output])
    group = common.add_argument_group("cluster")
    group.add_argument("--cluster-name", default="default-cluster")
    group.add_argument("--backend", default=None,
                       help="local, docker, kubernetes (k8s) or another installed backend "
                            "(default: the one the cluster was started with, else local)")
    group.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                       help="a constructor argument of the backend (repeatable)")
    group.add_argument("--cluster-dir", default=None,
                       help="local backend: default $CLIPPER_HOME/<cluster name>")
    group.add_argument("--query-port", type=int, default=None, help="default 1337")
    group.add_argument("--management-port", type=int, default=None, help="default 1338")
    group.add_argument("--rpc-port", type=int, default=None, help="default 7000")
    group.add_argument("--redis-ip", default=None, help="use this Redis")
    group.add_argument("--redis-port", type=int, default=None, help="default 6379")

    parser = argparse.ArgumentParser(
        prog="clipper", description="Run and inspect a Clipper cluster on any backend.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Any, help_text: str,
            parents: Sequence[argparse.ArgumentParser] = (common,)) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=list(parents), help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("start", cmd_start, "start the cluster (a local one resumes its saved state)")
    p.add_argument("--cache-size", type=int, default=33554432, help="bytes (default 32 MiB)")
    p = add("stop", cmd_stop, "stop the cluster's frontends and replicas")
    p.add_argument("--kill", action="store_true", help="kill instead of a graceful stop")
    p.add_argument("--keep-state", action="store_true",
                   help="local backend: keep applications, models and links for `clipper start`")
    add("status", cmd_status, "show whether the cluster runs and what it holds")
    add("apps", cmd_apps, "list applications")
    add("models", cmd_models, "list model versions")
    add("replicas", cmd_replicas, "list replicas")
    add("metrics", cmd_metrics, "show the query frontend's metrics per app and model version")
    p = add("top", cmd_top, "live view of predictions/s, latency, batches and queues")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    p.add_argument("--iterations", type=int, default=0, help="stop after N refreshes (0: never)")
    p = add("deploy", cmd_deploy, "deploy a Python function from a file as a model version")
    p.add_argument("target", metavar="FILE.py:FUNCTION")
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--version", default="1")
    p.add_argument("--input-type", default="doubles",
                   help="integers, floats, doubles, bytes or strings (default doubles)")
    p.add_argument("--app", default=None,
                   help="link the model to this application (registered if it does not exist)")
    p.add_argument("--slo-micros", type=int, default=100000, help="SLO of a new application")
    p.add_argument("--default-output", default="None", help="default output of a new application")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=-1, help="-1: adaptive")
    p.add_argument("--pkg", action="append", default=[], help="a pip requirement (repeatable)")
    p = add("set-version", cmd_set_version, "make a model version the current one")
    p.add_argument("model")
    p.add_argument("version")
    p = add("scale", cmd_scale, "set the number of replicas of a model version")
    p.add_argument("model")
    p.add_argument("replicas", type=int)
    p.add_argument("--version", default=None, help="default: the current version")
    p = add("policy", cmd_policy,
            "show an application's selection policy and what it learned, or choose another")
    p.add_argument("app")
    p.add_argument("policy", nargs="?", default=None,
                   help="exp3, exp4, epsilon_greedy, ucb1, thompson, ensemble, default or a "
                        "plugin's (omit to show the current one)")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter of the policy (repeatable), e.g. -p gamma=0.1 "
                        "-p per_user=true")
    p.add_argument("--uid", type=int, default=0, help="show what was learned for this user")
    p = add("traffic", cmd_traffic,
            "show how a model's queries are split between its versions, or set the split")
    p.add_argument("model")
    p.add_argument("weights", nargs="*", metavar="VERSION=WEIGHT", help="e.g. 1=95 2=5")
    p = add("shadow", cmd_shadow,
            "mirror a model's queries to other versions (answers compared, never returned)")
    p.add_argument("model")
    p.add_argument("versions", nargs="*", metavar="VERSION", help="none: stop mirroring")
    p = add("promote", cmd_promote, "make a model's canary version current, with all traffic")
    p.add_argument("model")
    p = add("rollback", cmd_rollback,
            "return all of a model's traffic to the version current before its split, shadows "
            "or promotion")
    p.add_argument("model")
    p = add("predict", cmd_predict, "send one query to an application")
    p.add_argument("app")
    p.add_argument("input", metavar="json",
                   help="the input (e.g. '[1.1, 2.2]') or a whole request body")
    p.add_argument("--version", default=None, help="query this model version")
    add("token", cmd_token, "print the management API token (for curl and the dashboard)")
    p = add("logs", cmd_logs, "copy every log of the cluster into a directory")
    p.add_argument("--dir", default="clipper_logs/")
    add("plugins", cmd_plugins, "list installed plugins and what they provide", (output,))
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
