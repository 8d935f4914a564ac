"""``python -m bench [--quick]``: measure the query path against nginx in one run."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

from bench import BenchError
from bench.cluster import Cluster
from bench.floor import profile_floor, py_spy
from bench.many import measure_many
from bench.peers import measure_peers
from bench.reference import Nginx
from bench.report import (
    peers_table,
    plot,
    render_docs,
    render_peers_docs,
    replace_section,
    targets,
    targets_table,
    write_json,
)
from bench.runner import (
    FULL,
    QUICK,
    Measured,
    Runner,
    Settings,
    Target,
    pin_and_limit_threads,
    records,
)
from bench.selection import APP as ENSEMBLE_APP
from bench.selection import deploy_ensemble, measure_selection
from bench.soak import DOCS_END as SOAK_END
from bench.soak import DOCS_START as SOAK_START
from bench.soak import measure_soak, plot_soak, soak_markdown
from bench.tracing import measure_traced
from bench.workloads import BODY_TEMPLATE, deployments, scenarios

log = logging.getLogger("bench")
ROOT = Path(__file__).resolve().parent.parent


def _tool_version(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (proc.stdout + proc.stderr).strip().splitlines()[0] if (proc.stdout + proc.stderr) else ""


def _processes(markers: list[str]) -> list[dict[str, Any]]:
    """Descendants of this process and processes whose command line names a marker, with the
    cores each may run on: the layout as the kernel sees it."""
    me = os.getpid()
    parents: dict[int, int] = {}
    cmdlines: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdlines[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ") \
                .decode(errors="replace").strip()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])

    def descends(pid: int) -> bool:
        while pid > 1:
            if pid == me:
                return True
            pid = parents.get(pid, 0)
        return False

    found = []
    for pid, cmd in sorted(cmdlines.items()):
        if pid != me and (descends(pid) or any(m in cmd for m in markers)):
            try:
                cpus = sorted(os.sched_getaffinity(pid))
            except OSError:
                continue
            found.append({"pid": pid, "cmd": cmd[:160], "cpus": cpus})
    return found


def top_frames(collapsed: str, n: int = 15) -> list[tuple[str, float]]:
    """The ``n`` frames with the most self time in py-spy's collapsed stacks, as shares."""
    self_time: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        self_time[leaf] = self_time.get(leaf, 0) + int(count)
        total += int(count)
    ranked = sorted(self_time.items(), key=lambda kv: -kv[1])[:n]
    return [(frame, count / total) for frame, count in ranked]


def _profile(cluster: Cluster, runner: Runner, out: Path) -> dict[str, Any]:
    """py-spy's collapsed stacks of the server process under a saturating ``sum`` load."""
    pid, spy_exe = cluster.server_pid(), py_spy()
    if spy_exe is None or pid is None:
        raise BenchError("--profile needs py-spy (pip install py-spy) and a running server")
    out.mkdir(parents=True, exist_ok=True)
    target = out / "profile-sum.txt"
    spy = subprocess.Popen([spy_exe, "record", "--pid", str(pid), "--rate", "250", "--gil",
                            "--duration", str(int(runner.settings.duration)), "--format", "raw",
                            "-o", str(target)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.5)
    load = runner.closed(Target(cluster.query_port, "/sum/predict"), BODY_TEMPLATE, True,
                         max(runner.settings.connections))
    output, _ = spy.communicate(timeout=60)
    if spy.returncode != 0 or not target.is_file():
        raise BenchError(f"py-spy failed: {output.strip()[-1000:]}")
    top = top_frames(target.read_text())
    for frame, share in top:
        log.info("profile: %5.1f%% %s", share * 100, frame)
    return {"file": str(target), "qps_while_profiled": load.qps,
            "top_self_time": [[frame, round(share, 4)] for frame, share in top]}


def run(settings: Settings, only: list[str] | None, out: Path, profile: bool
        ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Measure everything; return the records and the run's metadata."""
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not installed; apt-get install "
                             f"{'wrk' if tool == 'wrk' else 'util-linux'}")
    pin_and_limit_threads(settings)
    runner = Runner(settings)
    recs: list[dict[str, Any]] = []
    meta: dict[str, Any] = {"layout": settings.layout(), "settings": attrs.asdict(settings),
                            "load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="clipper-bench-") as tmp, \
            Nginx(Path(tmp) / "nginx") as ngx:
        started = time.monotonic()
        with Cluster(Path(tmp) / "cluster") as cluster:
            deps = deployments()
            many = not only or "many" in only
            selection = not only or "selection" in only
            rest = [name for name in only or () if name not in ("many", "selection")]
            chosen = scenarios([d.app for d in deps], rest) if rest or not only else []
            traced, chosen = [s for s in chosen if s.traced], [s for s in chosen if not s.traced]
            queries_sum = many or selection or profile
            apps = {s.app for s in chosen} | ({"sum"} if queries_sum else set())
            deps = [d for d in deps if d.app in apps]
            for dep in deps:
                cluster.deploy(dep)
            if selection:
                deploy_ensemble(cluster)
            for scenario in chosen:
                cluster.wait_ready(scenario.app, scenario.body)
            if queries_sum:
                cluster.wait_ready("sum")
            if selection:
                cluster.wait_ready(ENSEMBLE_APP)
            log.info("cluster up, %d applications deployed in %.1f s", len(deps),
                     time.monotonic() - started)
            meta["processes"] = _processes([str(tmp)])
            measured: dict[str, Measured] = {}
            for scenario in chosen:
                nginx = ngx.port if scenario.reference.startswith("nginx") else None
                ours, ref = runner.measure(cluster.query_port, scenario, nginx)
                measured[scenario.name] = ours
                ref = ref or measured[scenario.reference]
                recs += records(scenario, ours, ref, settings.fractions, settings.layout())
            if traced:
                traced_recs, meta["tracing"] = measure_traced(
                    runner, Path(tmp) / "cluster-traced", traced, deps, cluster)
                recs += traced_recs
            # the latency floor in every run without --only; the saturation profile on request
            profiles = [("floor", profile_floor)] if profile or not only else []
            profiles += [("profile", _profile)] if profile else []
            for key, measure in profiles:
                try:
                    meta[key] = measure(cluster, runner, out)
                except BenchError as exc:  # the measurements stand without the profile
                    log.error("%s: %s", key, exc)
                    meta[key] = {"error": str(exc)}
            if selection:
                recs += measure_selection(cluster, runner)
            if many:  # last: its registrations stay on the cluster
                recs += measure_many(cluster, runner, ngx.port)
    lags = [m.open[r].send_lag_p99_ms for m in measured.values() for r in m.open]
    meta["generator_send_lag_p99_ms_max"] = max(lags) if lags else None
    meta["load_average_at_end"] = os.getloadavg()
    return recs, meta


def run_peers(settings: Settings) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Clipper's ``sum``, then each peer, each against nginx, in one run."""
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not installed; see docs/performance.md")
    pin_and_limit_threads(settings)
    runner = Runner(settings)
    meta: dict[str, Any] = {"layout": settings.layout(), "settings": attrs.asdict(settings),
                            "load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="clipper-bench-peers-") as tmp, \
            Nginx(Path(tmp) / "nginx") as ngx:
        sum_app = next(s for s in scenarios(["sum"]) if s.name == "sum")
        with Cluster(Path(tmp) / "cluster") as cluster:
            cluster.deploy(next(d for d in deployments() if d.app == "sum"))
            cluster.wait_ready("sum")
            ours, ref = runner.measure(cluster.query_port, sum_app, ngx.port)
        assert ref is not None
        recs = records(attrs.evolve(sum_app, name="clipper"), ours, ref, settings.fractions,
                       settings.layout())
        peer_recs, meta["versions"] = measure_peers(runner, ngx.port, Path(tmp) / "peers", ours)
    meta["load_average_at_end"] = os.getloadavg()
    return recs + peer_recs, meta


def soak(args: argparse.Namespace) -> int:
    """``--soak``: run it, write ``soak.json``/``soak.png`` and the docs' soak section."""
    with tempfile.TemporaryDirectory(prefix="clipper-bench-soak-") as tmp:
        result = measure_soak(args.soak_seconds, Path(tmp) / "cluster")
    meta = {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": _tool_version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
            "command": f"python -m bench --soak --soak-seconds {args.soak_seconds:g}"}
    write_json(args.out / "soak.json", {**meta, **result})
    plot_soak(args.out / "soak.png", result,
              f"Server RSS during the soak, {meta['date']} (commit {meta['commit']})")
    if str(args.docs) and args.docs.is_file():
        replace_section(args.docs, SOAK_START, SOAK_END, soak_markdown(result, meta))
    print(f"soak: {result['answered']:,} answers, error rate {result['error_rate']:.4%}, "
          f"RSS over the last quarter {result['rss_last_quarter_start_mb']:.1f} -> "
          f"{result['rss_last_quarter_max_mb']:.1f} MB "
          f"({'levels off' if result['levels_off'] else 'grows'}); wrote "
          f"{args.out / 'soak.json'} and soak.png")
    return 0 if result["levels_off"] and result["errors"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (under 3 minutes)")
    parser.add_argument("--only", action="append", metavar="SCENARIO",
                        help="measure only this scenario (repeatable), e.g. sum, or the many or "
                             "selection figures")
    parser.add_argument("--sut-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--nice", type=int, default=0,
                        help="nice value of everything the benchmark runs (e.g. -10 on a busy "
                             "shared machine; negative needs root)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "performance.md",
                        help="document whose figures section is rewritten ('' for none)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the server under sum load (py-spy), and break a lone "
                             "sum query down by stage (the latency floor) even with --only")
    parser.add_argument("--peers", action="store_true",
                        help="measure feature_sum on Ray Serve, BentoML, LitServe and Triton "
                             "beside Clipper's sum instead (writes peers.json)")
    parser.add_argument("--soak", action="store_true",
                        help="run the soak instead: valid, invalid and slow clients for "
                             "--soak-seconds; server memory over time and the error rate "
                             "(writes soak.json and soak.png)")
    parser.add_argument("--soak-seconds", type=float, default=600.0, metavar="S",
                        help="how long the soak runs (default 600)")
    args = parser.parse_args(argv)
    if args.soak:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        return soak(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    base = QUICK if args.quick else FULL
    settings = attrs.evolve(base, sut_cpu=args.sut_cpu, load_cpu=args.load_cpu,
                               nice=args.nice)
    started = time.monotonic()
    try:
        if args.peers:
            recs, meta = run_peers(settings)
        else:
            recs, meta = run(settings, args.only, args.out, args.profile)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    meta.update({
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "commit": _tool_version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "wrk": _tool_version(["wrk", "-v"]), "nginx": _tool_version(["nginx", "-v"]),
        "python": sys.version.split()[0], "elapsed_s": round(time.monotonic() - started, 1)})
    stem = "peers" if args.peers else "latest"
    write_json(args.out / f"{stem}.json", recs)
    write_json(args.out / f"{stem}-meta.json", meta)
    what = "Clipper and its peers on feature_sum" if args.peers else \
        "Clipper query path vs its reference"
    plot(args.out / f"{stem}.png", recs,
         f"{what}, {meta['date']} ({meta['mode']} run, commit {meta['commit']})\n"
         f"{meta['layout']}")
    if str(args.docs) and args.docs.is_file():
        (render_peers_docs if args.peers else render_docs)(args.docs, recs, meta)
    print(peers_table(recs, meta.get("versions")) if args.peers else targets_table(targets(recs)))
    print(f"wrote {args.out / stem}.json and {stem}.png in {meta['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
