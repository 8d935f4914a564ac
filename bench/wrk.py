"""Closed-loop measurements with ``wrk`` (Debian package) and a generated Lua script.

The script POSTs a JSON body (distinct per request, or fixed), counts non-200 answers and
answers carrying the default output in ``response()``, and prints one ``BENCH_JSON`` line from
``done()`` that :func:`parse_wrk_output` reads.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import attrs

from bench import BenchError
from clipper_core.exceptions import ValidationError

_MARK = "BENCH_JSON "

_LUA = r"""
local path, head, tail, distinct, base = %(path)s, %(head)s, %(tail)s, %(distinct)s, %(base)d
local headers = {["Content-Type"] = "application/json"}
local threads, counter, fixed = {}, 0, nil

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  non200, defaults = 0, 0
  offset = base + tid * 1000000000
  -- formatted here, not at load time: wrk fills in the Host header only after loading
  fixed = wrk.format("POST", path, headers, head .. string.format("%%d", base) .. tail)
end

function request()
  if not distinct then return fixed end
  counter = counter + 1
  return wrk.format("POST", path, headers, head .. string.format("%%d", offset + counter) .. tail)
end

function response(status, hdrs, body)
  if status ~= 200 then non200 = non200 + 1 end
  if body:find('"default":true', 1, true) then defaults = defaults + 1 end
end

function done(summary, latency, requests)
  local n, d = 0, 0
  for _, t in ipairs(threads) do
    n = n + t:get("non200")
    d = d + t:get("defaults")
  end
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,"max_us":%%d,' ..
    '"connect_errors":%%d,"read_errors":%%d,"write_errors":%%d,"timeouts":%%d,' ..
    '"non200":%%d,"defaults":%%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.timeout, n, d))
end
"""


@attrs.frozen
class WrkResult:
    """One closed-loop run. ``qps`` counts predictions: answers that are neither errors nor the
    default output. ``errors`` = socket errors + timeouts + non-200 answers."""

    qps: float
    requests: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    defaults: int
    connections: int = 0


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for ASCII text


def lua_script(path: str, template: str, distinct: bool, base: int = 0) -> str:
    """The wrk script for ``template`` (a JSON body with ``{n}``) POSTed to ``path``."""
    if "{n}" not in template or not template.isascii():
        raise ValidationError(f"body template must be ASCII and contain '{{n}}', got {template!r}")
    head, tail = template.split("{n}", 1)
    return _LUA % {"path": _lua_string(path), "head": _lua_string(head),
                   "tail": _lua_string(tail), "distinct": "true" if distinct else "false",
                   "base": base, "mark": _MARK}


def parse_wrk_output(text: str) -> WrkResult:
    """Read the ``BENCH_JSON`` line that the script's ``done()`` printed."""
    for line in text.splitlines():
        if line.startswith(_MARK):
            data = json.loads(line[len(_MARK):])
            break
    else:
        raise ValidationError(f"wrk printed no {_MARK.strip()} line; its output was:\n{text[-2000:]}")
    errors = (data["connect_errors"] + data["read_errors"] + data["write_errors"]
              + data["timeouts"] + data["non200"])
    seconds = data["duration_us"] / 1e6
    predictions = data["requests"] - data["non200"] - data["defaults"]
    return WrkResult(qps=predictions / seconds, requests=data["requests"],
                     p50_ms=data["p50_us"] / 1e3, p99_ms=data["p99_us"] / 1e3,
                     max_ms=data["max_us"] / 1e3, errors=errors, defaults=data["defaults"])


def run_wrk(port: int, path: str, template: str, *, distinct: bool, base: int,
            connections: int, duration: float, cpu: int | None, timeout_s: float = 5.0,
            threads: int = 1) -> WrkResult:
    """Run wrk against ``127.0.0.1:port`` for ``duration`` seconds (pinned to ``cpu``)."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(lua_script(path, template, distinct, base))
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
               f"--timeout={timeout_s:g}s", "-s", str(script), f"http://127.0.0.1:{port}"]
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu), *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return attrs.evolve(parse_wrk_output(proc.stdout), connections=connections)
