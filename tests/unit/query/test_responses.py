"""Rendering of responses and the per-application deadline timer."""

from __future__ import annotations

import asyncio
from time import monotonic

import orjson

from clipper_core.frontend.query import SLO_EXPLANATION, Pending
from clipper_core.frontend.routing import AppRoute
from clipper_core.metrics import MetricsRegistry
from clipper_core.types import Application, InputType


class Recorder:
    """Stands in for the HTTP responder: keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []
        self.at = 0.0

    def send(self, status: int, body: bytes, extra_headers: object = ()) -> None:
        self.sent.append((status, body))
        self.headers = extra_headers
        self.at = monotonic()


def route(loop: asyncio.AbstractEventLoop, slo_micros: int = 50_000,
          default: str = "DEFAULT") -> AppRoute:
    app = Application("a", InputType.DOUBLES, default, slo_micros)
    return AppRoute(app, ["m"], None, None, MetricsRegistry(), loop)


def test_single_and_batch_rendering() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        r = route(loop, default='{"x": 1}')
        one = Recorder()
        pending = Pending(r, one, 1, 7, monotonic())  # type: ignore[arg-type]
        pending.resolve(0, b"1.5", None)
        assert one.sent == [(200, b'{"query_id":7,"output":1.5,"default":false}')]
        many = Recorder()
        pending = Pending(r, many, 2, 8, monotonic())  # type: ignore[arg-type]
        pending.resolve(1, None, "Model error: ValueError: bad")
        assert many.sent == []
        pending.resolve(0, b'"cat"', None)
        pending.resolve(0, b'"dog"', None)  # a second answer for a slot is ignored
        (status, body), = many.sent
        assert status == 200 and body == (
            b'{"batch_predictions":[{"query_id":8,"output":"cat","default":false},'
            b'{"query_id":9,"output":{"x":1},"default":true,'
            b'"default_explanation":"Model error: ValueError: bad"}]}')
        ratio = r.default_ratio
        assert (ratio.numerator, ratio.denominator) == (1, 3)
    asyncio.run(main())


def test_one_timer_per_app_expires_requests_in_order() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        r = route(loop, slo_micros=50_000)
        recorders = [Recorder() for _ in range(3)]
        pendings = []
        for i, rec in enumerate(recorders):
            pending = Pending(r, rec, 1, i, monotonic())  # type: ignore[arg-type]
            r.watch(pending)
            pendings.append(pending)
            await asyncio.sleep(0.01)
        pendings[1].resolve(0, b"2", None)
        assert r.timer is not None
        await asyncio.sleep(0.2)
        for i, rec in enumerate(recorders):
            body = orjson.loads(rec.sent[0][1])
            if i == 1:
                assert body == {"query_id": 1, "output": 2, "default": False}
            else:
                assert body["default"] is True
                assert body["default_explanation"] == SLO_EXPLANATION
                assert rec.at >= pendings[i].deadline - 0.0011
        assert recorders[0].at <= recorders[2].at
        assert r.timer is None and not r.expiring
        late = Recorder()
        pending = Pending(r, late, 1, 9, monotonic())  # type: ignore[arg-type]
        r.watch(pending)
        pending.resolve(0, b"3", None)  # answered: the timer finds nothing to expire
        await asyncio.sleep(0.07)
        assert late.sent == [(200, b'{"query_id":9,"output":3,"default":false}')]
    asyncio.run(main())
