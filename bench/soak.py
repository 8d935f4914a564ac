"""``python -m bench --soak [--soak-seconds N]``: valid, invalid and slow clients against one
embedded cluster for a bounded time; the server's memory over time and the error rate.

Client kinds, all at once, from one asyncio loop in this process:

- ``valid``: keep-alive connections posting ``sum`` queries back to back;
- ``invalid``: malformed HTTP, bad JSON, wrong input types, unknown apps, a ``Content-Length``
  over the body limit, each answered 4xx (the connection is opened again when closed);
- ``slowloris``: connections sending a request head one byte a second (answered 408);
- ``unread``: connections pipelining 64 queries, reading nothing for 3 s, then everything.

An error is a valid query answered other than 200 (a prediction or the default output) or 503
(load shed), an invalid one answered other than 4xx, or any connection dropped without an
answer. Memory levels off when the server's RSS over the last
quarter of the run exceeds that of the second quarter by less than 10%.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.cluster import Cluster
from bench.loadgen import ResponseParser
from bench.workloads import deployments

log = logging.getLogger("bench")

DOCS_START = "<!-- bench:soak:start -->"
DOCS_END = "<!-- bench:soak:end -->"
#: Connections of each kind.
CLIENTS = {"valid": 8, "invalid": 2, "slowloris": 4, "unread": 2}
#: RSS growth over the run's last quarter below which memory is level.
LEVEL_GROWTH = 0.02
INVALID = [
    b"GARBAGE\r\n\r\n",
    b"POST /sum/predict HTTP/1.1\r\nContent-Length: 9\r\n\r\n{not json",
    b'POST /sum/predict HTTP/1.1\r\nContent-Length: 17\r\n\r\n{"input": "text"}',
    b'POST /sum/predict HTTP/1.1\r\nContent-Length: 19\r\n\r\n{"input": [1, "a"]}',
    b'POST /nope/predict HTTP/1.1\r\nContent-Length: 14\r\n\r\n{"input": [1]}',
    b"POST /sum/predict HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n",
    b"GET /sum/predict HTTP/1.1\r\n\r\n",
]


def _query(i: int) -> bytes:
    body = b'{"input": [%d.5, 2.0, 3.0]}' % (i % 100_000)  # mostly distinct: cache misses
    return b"POST /sum/predict HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class Soak:
    def __init__(self, port: int, seconds: float) -> None:
        self.port = port
        self.deadline = time.monotonic() + seconds
        self.counts: Counter[str] = Counter()
        self.sent = 0

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def valid(self) -> None:
        parser = ResponseParser()
        while self.running():
            try:
                reader, writer = await self._connect()
                while self.running():
                    self.sent += 1
                    writer.write(_query(self.sent))
                    done: list[tuple[int, bool]] = []
                    while not done:
                        data = await reader.read(65536)
                        if not data:
                            raise ConnectionError("closed without an answer")
                        done = parser.feed(data)
                    for status, default in done:
                        key = "default" if status == 200 and default else str(status)
                        self.counts[f"valid {key}"] += 1
                writer.close()
            except (OSError, ConnectionError):
                self.counts["valid dropped"] += 1
                parser = ResponseParser()

    async def invalid(self, offset: int) -> None:
        i = offset
        while self.running():
            i += 1
            request = INVALID[i % len(INVALID)]
            try:
                reader, writer = await self._connect()
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 30)
                self.counts[f"invalid {head[9:12].decode()}"] += 1
                writer.close()
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                self.counts["invalid dropped"] += 1

    async def slowloris(self) -> None:
        head = b"POST /sum/predict HTTP/1.1\r\nContent-Length: 10\r\nX-Slow: " + b"z" * 200
        while self.running():
            try:
                reader, writer = await self._connect()
                for byte in head:
                    if reader.at_eof() or not self.running():
                        break
                    writer.write(bytes([byte]))
                    try:
                        line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 1.0)
                    except TimeoutError:
                        continue
                    self.counts[f"slowloris {line[9:12].decode()}"] += 1
                    break
                writer.close()
            except (OSError, asyncio.IncompleteReadError):
                self.counts["slowloris dropped"] += 1

    async def unread(self) -> None:
        while self.running():
            parser = ResponseParser()
            try:
                reader, writer = await self._connect()
                writer.write(b"".join(_query(i) for i in range(64)))
                await asyncio.sleep(3.0)
                answered = 0
                while answered < 64:
                    data = await asyncio.wait_for(reader.read(1 << 20), 30)
                    if not data:
                        raise ConnectionError("closed without an answer")
                    for status, default in parser.feed(data):
                        answered += 1
                        key = "default" if status == 200 and default else str(status)
                        self.counts[f"unread {key}"] += 1
                writer.close()
            except (OSError, ConnectionError, TimeoutError):
                self.counts["unread dropped"] += 1

    async def run(self) -> None:
        tasks = [self.valid() for _ in range(CLIENTS["valid"])]
        tasks += [self.invalid(i) for i in range(CLIENTS["invalid"])]
        tasks += [self.slowloris() for _ in range(CLIENTS["slowloris"])]
        tasks += [self.unread() for _ in range(CLIENTS["unread"])]
        await asyncio.gather(*tasks)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _sample(pid: int, soak: Soak, started: float, every: float, samples: list[dict[str, Any]]
            ) -> None:
    while soak.running():
        samples.append(_point(pid, soak, started))
        time.sleep(every)


def _point(pid: int, soak: Soak, started: float) -> dict[str, Any]:
    return {"t_s": round(time.monotonic() - started, 1), "rss_mb": round(rss_mb(pid), 1),
            "answered": sum(soak.counts.values())}


def errors(counts: Counter[str]) -> int:
    """Answers that break the contract: see the module docstring."""
    bad = 0
    for key, n in counts.items():
        kind, outcome = key.split(" ", 1)
        if outcome == "dropped":
            bad += n
        elif kind in ("valid", "unread"):
            bad += n if outcome not in ("200", "default", "503") else 0
        elif not outcome.startswith("4"):
            bad += n
    return bad


def measure_soak(seconds: float, workdir: Path) -> dict[str, Any]:
    """Run the soak for ``seconds``; return its samples and summary."""
    with Cluster(workdir) as cluster:
        cluster.deploy(next(d for d in deployments() if d.app == "sum"))
        cluster.wait_ready("sum")
        pid = cluster.server_pid()
        assert pid is not None
        soak = Soak(cluster.query_port, seconds)
        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        sampler = threading.Thread(target=_sample, args=(pid, soak, started,
                                                         max(1.0, seconds / 60), samples))
        sampler.start()
        asyncio.run(soak.run())
        sampler.join()
        samples.append(_point(pid, soak, started))
    return {"seconds": seconds, "clients": CLIENTS, "samples": samples,
            "counts": dict(sorted(soak.counts.items())), **summary(samples, soak.counts),
            "load_average_at_end": os.getloadavg()}


def summary(samples: list[dict[str, Any]], counts: Counter[str]) -> dict[str, Any]:
    """Error rate and whether the server's RSS levels off (see the module docstring)."""
    last = samples[-max(2, len(samples) // 4):]
    start, peak = last[0]["rss_mb"], max(s["rss_mb"] for s in last)
    total = sum(counts.values())
    return {"answered": total, "errors": errors(counts),
            "error_rate": errors(counts) / max(total, 1),
            "rss_last_quarter_start_mb": start, "rss_last_quarter_max_mb": peak,
            "rss_peak_mb": max(s["rss_mb"] for s in samples),
            "rss_growth": peak / start - 1, "levels_off": peak / start - 1 < LEVEL_GROWTH}


def plot_soak(path: Path, result: dict[str, Any], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot([s["t_s"] for s in result["samples"]], [s["rss_mb"] for s in result["samples"]],
            marker=".")
    ax.set_xlabel("seconds")
    ax.set_ylabel("server RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def soak_markdown(result: dict[str, Any], meta: dict[str, Any]) -> str:
    """The soak section of docs/performance.md."""
    samples = result["samples"]
    step = max(1, len(samples) // 10)
    rows = "\n".join(f"| {s['t_s']:g} | {s['rss_mb']:.1f} | {s['answered']:,} |"
                     for s in [*samples[::step][:-1], samples[-1]])
    counts = "\n".join(f"| {key} | {n:,} |" for key, n in result["counts"].items())
    verdict = "levels off" if result["levels_off"] else "does NOT level off"
    return (f"Run of {meta['date']} (commit {meta['commit']}): `{meta['command']}`, "
            f"{result['seconds']:g} s, clients {result['clients']}; load average at end "
            f"{', '.join(f'{x:.2f}' for x in result['load_average_at_end'])}.\n\n"
            f"Server RSS: {result['rss_last_quarter_start_mb']:.1f} MB when the last quarter of "
            f"the run began, at most {result['rss_last_quarter_max_mb']:.1f} MB in it "
            f"({result['rss_growth']:+.1%}): memory {verdict}. Error rate "
            f"{result['error_rate']:.4%} ({result['errors']:,} of {result['answered']:,}).\n\n"
            f"| s | server RSS MB | answers so far |\n|---:|---:|---:|\n{rows}\n\n"
            f"| client outcome | count |\n|---|---:|\n{counts}\n\n"
            "![server RSS during the soak](../bench/results/soak.png)\n")
