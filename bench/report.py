"""Results: ``latest.json``, the plot, the issue's targets and the figures table of the docs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import attrs

from bench import BenchError

DOCS_START = "<!-- bench:figures:start -->"
DOCS_END = "<!-- bench:figures:end -->"
PEERS_START = "<!-- bench:peers:start -->"
PEERS_END = "<!-- bench:peers:end -->"


@attrs.frozen
class Target:
    """One goal (issues 6 and 15), checked against the records of a run."""

    goal: str
    figure: str
    met: bool | None  # None: the run did not measure it


def _by_name(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["scenario"]: r for r in records}


def targets(records: list[dict[str, Any]]) -> list[Target]:
    """The issue's targets (ratios in one run)."""
    rec = _by_name(records)
    out = []

    def ratio(name: str, key: str, goal: str, ok: Any) -> None:
        r = rec.get(name)
        if r is None:
            out.append(Target(goal, "not measured", None))
        else:
            value = r[key]
            out.append(Target(goal, _fmt(value), None if value is None else bool(ok(value))))

    ratio("sum/saturation", "ratio_qps", "sum, uncached, saturation >= 0.40 x nginx qps",
          lambda v: v >= 0.40)
    ratio("sum-cached/saturation", "ratio_qps", "sum, all cache hits, saturation >= 0.60 x nginx qps",
          lambda v: v >= 0.60)
    ratio("sum/c1", "ratio_p50", "sum, concurrency 1: p50 <= 3 x nginx p50", lambda v: v <= 3)
    ratio("batchable/saturation", "ratio_qps",
          "batchable: adaptive batching >= 10 x the qps of batch_size=1", lambda v: v >= 10)
    half = rec.get("batchable/open-50")
    goal = "batchable at half saturation: p99 <= 20 ms SLO and < 1% defaults"
    if half is None:
        out.append(Target(goal, "not measured", None))
    else:
        share = half["defaults"] / max(half["answered"], 1)
        out.append(Target(goal, f"p99 {half['p99_ms']:.2f} ms, defaults {share:.2%}",
                          half["p99_ms"] <= 20 and share < 0.01))
    ratio("bytes-150k/saturation", "ratio_qps",
          "150 KB bytes input: MB/s at saturation >= 0.5 x nginx reading the same body",
          lambda v: v >= 0.5)
    ratio("selection/exp4-of-3-c1-ratio", "value",
          "Exp4 ensemble of 3 models, concurrency 1: p50 < 2 x one model's", lambda v: v < 2)
    ratio("many/sum-throughput-ratio", "value",
          "sum among 1,000 applications: saturation within 5% of sum alone", lambda v: v >= 0.95)
    return out


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, allow_nan=True) + "\n")


def _fmt(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def measurements(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of load runs (those with ``qps``), not single figures (``value``)."""
    return [r for r in records if "qps" in r]


def single_figures_table(records: list[dict[str, Any]]) -> str:
    """A Markdown table of the single figures (records with ``value``, e.g. ``many/...``)."""
    lines = ["| figure | value | unit | what |", "|---|---:|---|---|"]
    lines += [f"| {r['scenario']} | {_fmt(r['value'], 3)} | {r['unit']} | {r['detail']} |"
              for r in records if "value" in r]
    return "\n".join(lines)


def figures_table(records: list[dict[str, Any]]) -> str:
    """A Markdown table of every load run."""
    lines = ["| scenario | qps | p50 ms | p99 ms | errors | defaults | reference | ref qps | "
             "ref p50 ms | ratio qps | ratio p50 |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in measurements(records):
        name = r["scenario"]
        if "offered_qps" in r:
            name += f" (offered {r['offered_qps']:,.0f}/s)"
        if "mb_s" in r:
            name += f" ({r['mb_s']:,.1f} MB/s, nginx {r['reference_mb_s']:,.1f})"
        lines.append(f"| {name} | {_fmt(r['qps'], 0)} | {_fmt(r['p50_ms'], 3)} | "
                     f"{_fmt(r['p99_ms'], 3)} | {r['errors']} | {r['defaults']} | "
                     f"{r['reference']} | {_fmt(r['reference_qps'], 0)} | "
                     f"{_fmt(r['reference_p50_ms'], 3)} | {_fmt(r['ratio_qps'])} | "
                     f"{_fmt(r['ratio_p50'])} |")
    return "\n".join(lines)


def targets_table(found: list[Target]) -> str:
    lines = ["| target | figure | met |", "|---|---|---|"]
    for t in found:
        met = "not measured" if t.met is None else ("yes" if t.met else "**no**")
        lines.append(f"| {t.goal} | {t.figure} | {met} |")
    return "\n".join(lines)


def _loads(values: list[float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def render_docs(doc: Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Replace the figures section of ``doc`` (between the bench markers)."""
    body = (f"Run of {meta['date']} ({meta['mode']}, commit {meta['commit']}); "
            f"layout: {meta['layout']}; load average (1/5/15 min) at start "
            f"{_loads(meta['load_average_at_start'])}, at end {_loads(meta['load_average_at_end'])} "
            "(2 cores: above 2, other processes competed with the benchmark).\n\n"
            f"Targets (issues 6 and 15):\n\n{targets_table(targets(records))}\n\n"
            f"All load runs (`bench/results/latest.json`):\n\n{figures_table(records)}\n\n"
            + (f"Single figures:\n\n{single_figures_table(records)}\n\n"
               if any("value" in r for r in records) else "")
            + (f"{floor_table(meta['floor'])}\n\n" if "p50_ms" in meta.get("floor", {}) else "")
            + (f"{tracing_table(records, meta['tracing'])}\n\n" if meta.get("tracing") else "") +
            "![latency against offered load](../bench/results/latest.png)\n")
    replace_section(doc, DOCS_START, DOCS_END, body)


def tracing_table(records: list[dict[str, Any]], tracing: dict[str, Any]) -> str:
    """The cost of tracing (``bench.tracing``): each traced scenario against ``sum``."""
    rec = _by_name(records)
    lines = ["Tracing (`bench/tracing.py`): `sum` on a cluster exporting spans over OTLP/HTTP, "
             "against `sum` with tracing off (the default) in the same run:", "",
             "| scenario | requests traced | saturation qps | x tracing off | c1 p50 ms | "
             "x tracing off | server CPU µs/query | tracing off | spans exported |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, sink in tracing.items():
        sat, c1 = rec.get(f"{name}/saturation"), rec.get(f"{name}/c1")
        if sat and c1:
            lines.append(
                f"| {name} | {sink['sampled']:.0%} | {_fmt(sat['qps'], 0)} | "
                f"{_fmt(sat['ratio_qps'])} | {_fmt(c1['p50_ms'], 3)} | {_fmt(c1['ratio_p50'])} | "
                f"{_fmt(sink['server_cpu_us_per_query'], 1)} | "
                f"{_fmt(sink['untraced_server_cpu_us_per_query'], 1)} | {sink['spans']:,} |")
    return "\n".join(lines)


def floor_table(floor: dict[str, Any]) -> str:
    """The lone query's time by stage (``bench.floor``), in µs per query."""
    lines = [f"The latency floor (`bench/floor.py`): a lone `sum` query, {floor['queries']:,} "
             f"queries at concurrency 1, p50 {floor['p50_ms']:.3f} ms, mean "
             f"{floor['mean_us']:,.0f} µs, sampled at {floor['rate_hz']} Hz:", "",
             "| process | stage | µs per query |", "|---|---|---:|"]
    for process in ("server", "replica"):
        lines += [f"| {process} | {stage} | {us:,.1f} |"
                  for stage, us in floor[f"{process}_us"].items()]
    lines.append(f"| neither | in transit (kernel, ZeroMQ I/O threads, wake-ups, client) | "
                 f"{floor['in_transit_us']:,.1f} |")
    return "\n".join(lines)


def replace_section(doc: Path, start: str, end: str, body: str) -> None:
    text = doc.read_text()
    if start not in text or end not in text:
        raise BenchError(f"{doc} has no {start} ... {end} section to fill")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    doc.write_text(pattern.sub(lambda _: f"{start}\n{body}{end}", text))


def peers_table(records: list[dict[str, Any]], versions: dict[str, str] | None = None) -> str:
    """Clipper's ``sum`` and each peer: saturation and concurrency 1, against nginx and Clipper."""
    versions = versions or {}
    rec = _by_name(records)
    lines = ["| system | saturation qps | x nginx | Clipper / it | c1 p50 ms | x nginx | "
             "it / Clipper | note |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    names = list(dict.fromkeys(r["scenario"].split("/")[0] for r in records))
    for name in names:
        if "error" in rec.get(name, {}):
            said = [line.strip() for line in rec[name]["error"].splitlines() if line.strip()]
            why = said[0][:120] + (f" ... {said[-1][:160]}" if len(said) > 1 else "")
            lines.append(f"| {name} | - | - | - | - | - | - | cannot run here: "
                         f"{why.replace('|', '/')} |")
            continue
        sat, c1 = rec.get(f"{name}/saturation"), rec.get(f"{name}/c1")
        if not sat or not c1:
            continue
        system = name.removeprefix("peer-")
        label = f"{system} ({versions[system]})" if system in versions else system
        mine = "-" if name == "clipper" else _fmt(sat.get("clipper_ratio_qps"))
        theirs = "-" if name == "clipper" else _fmt(
            1 / c1["clipper_ratio_p50"] if c1.get("clipper_ratio_p50") else None)
        note = f"{sat['connections']} connections; errors {sat['errors']}"
        lines.append(f"| {label} | {_fmt(sat['qps'], 0)} | {_fmt(sat['ratio_qps'])} | {mine} | "
                     f"{_fmt(c1['p50_ms'], 3)} | {_fmt(c1['ratio_p50'])} | {theirs} | {note} |")
    return "\n".join(lines)


def render_peers_docs(doc: Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Replace the peers section of ``doc`` (between the bench:peers markers)."""
    versions = meta.get("versions", {})
    body = (f"Run of {meta['date']} ({meta['mode']}, commit {meta['commit']}); "
            f"layout: {meta['layout']}; load average (1/5/15 min) at start "
            f"{_loads(meta['load_average_at_start'])}, at end {_loads(meta['load_average_at_end'])}."
            f"\n\n{peers_table(records, versions)}\n\n"
            f"All load runs (`bench/results/peers.json`):\n\n{figures_table(records)}\n\n"
            "![latency against offered load](../bench/results/peers.png)\n")
    replace_section(doc, PEERS_START, PEERS_END, body)


def plot(path: Path, records: list[dict[str, Any]], title: str) -> None:
    """Latency (p50, p99) against offered load, one panel per scenario, with its reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    rec = _by_name(records)
    names = list(dict.fromkeys(r["scenario"].split("/")[0] for r in records
                               if "offered_qps" in r))
    if not names:  # e.g. only the many-models figures: nothing to plot
        return
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        points = sorted((r for r in records if r["scenario"].startswith(f"{name}/open-")),
                        key=lambda r: r["offered_qps"])
        if not points:
            ax.set_visible(False)
            continue
        ref_name = points[0]["reference"]
        x = [r["offered_qps"] for r in points]
        rx = [r["reference_offered_qps"] for r in points]
        ax.plot(x, [r["p50_ms"] for r in points], "o-", color="tab:blue", label="p50")
        ax.plot(x, [r["p99_ms"] for r in points], "s--", color="tab:blue", label="p99")
        ax.plot(rx, [r["reference_p50_ms"] for r in points], "o-", color="tab:gray",
                label=f"{ref_name} p50")
        ax.plot(rx, [r["reference_p99_ms"] for r in points], "s--", color="tab:gray",
                label=f"{ref_name} p99")
        sat = rec.get(f"{name}/saturation")
        if sat:
            ax.axvline(sat["qps"], color="tab:red", lw=1, ls=":",
                       label=f"saturation {sat['qps']:,.0f}/s")
        if name.startswith("batchable"):
            ax.axhline(20, color="tab:orange", lw=1, label="SLO 20 ms")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        if max(rx) < 0.2 * max(x) or max(x) < 0.2 * max(rx):
            ax.set_xscale("log")  # e.g. batchable against batch_size=1: rates 40 x apart
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        else:
            ax.set_xlim(left=0)
        ax.set_title(f"{name} (vs {ref_name})")
        ax.set_xlabel("offered load (queries/s, open loop)")
        ax.set_ylabel("latency from scheduled send (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
