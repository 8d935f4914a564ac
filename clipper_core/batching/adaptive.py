"""Per-replica batch sizing: AIMD on measured batch latency plus an online latency model.

Each replica keeps

* an AIMD limit: a batch that used the whole limit and finished inside its latency budget
  raises the limit additively (doubling it while batches take under a quarter of the budget,
  like TCP's slow start, so a loaded replica gets there in a few batches); a batch that took
  longer than its budget cuts it by a factor;
* a latency model ``latency = a + b * n`` fitted online by exponentially weighted least
  squares over the batches the replica answered.

When a replica pulls, the batch size is ``min(limit, n_model, queued)`` where ``n_model`` is the
largest batch the model predicts to finish before the earliest queued deadline (with a safety
margin), so a batch never knowingly misses that deadline. A model deployed with a fixed
``batch_size`` gets exactly that many queries whenever that many are queued.
"""

from __future__ import annotations

from clipper_core.types import ADAPTIVE_BATCH_SIZE

#: Additive increase per full batch that met its budget.
ADDITIVE_STEP = 2
#: Multiplicative decrease when a batch exceeded its budget.
BACKOFF = 0.75
#: A batch "met its budget" when it took less than this fraction of it.
HEADROOM = 0.8
#: Below this fraction of the budget the limit doubles instead (slow start).
SLOW_START = 0.25
#: Fraction of the time left before the earliest deadline a batch may be predicted to use.
SAFETY = 0.9
#: Weight of the past in the latency model (per observed batch).
DECAY = 0.97
#: No adaptive batch is ever larger than this.
MAX_BATCH = 4096


class BatchSizer:
    """Chooses the next batch size of one replica and learns from its answered batches."""

    __slots__ = ("_s0", "_sl", "_sn", "_snl", "_snn", "a", "b", "fixed", "limit")

    def __init__(self, fixed: int = ADAPTIVE_BATCH_SIZE) -> None:
        self.fixed = fixed
        self.limit = 1
        self.a = 0.0
        self.b = 0.0
        self._s0 = self._sn = self._snn = self._sl = self._snl = 0.0

    def size(self, remaining_s: float, queued: int) -> int:
        """How many of ``queued`` queries to send, ``remaining_s`` before the earliest deadline."""
        if self.fixed > 0:
            return min(self.fixed, queued)
        n = min(self.limit, queued)
        if self.b > 0.0 and n > 1:
            fits = int((remaining_s * SAFETY - self.a) / self.b)
            n = min(n, fits)
        return max(1, n)

    def observe(self, n: int, latency_s: float, budget_s: float) -> None:
        """Learn from a batch of ``n`` queries that took ``latency_s`` against ``budget_s``."""
        d = DECAY
        self._s0 = self._s0 * d + 1.0
        self._sn = self._sn * d + n
        self._snn = self._snn * d + n * n
        self._sl = self._sl * d + latency_s
        self._snl = self._snl * d + n * latency_s
        self._fit()
        if self.fixed > 0:
            return
        if latency_s > budget_s:
            self.limit = max(1, min(self.limit - 1, int(self.limit * BACKOFF)))
        elif n >= self.limit and latency_s < budget_s * HEADROOM:
            step = self.limit if latency_s < budget_s * SLOW_START else ADDITIVE_STEP
            self.limit = min(MAX_BATCH, self.limit + max(step, ADDITIVE_STEP))

    def _fit(self) -> None:
        s0, sn, snn, sl, snl = self._s0, self._sn, self._snn, self._sl, self._snl
        det = s0 * snn - sn * sn
        b = (s0 * snl - sn * sl) / det if det > 1e-9 * s0 * snn else 0.0
        if b <= 0.0:
            # One batch size seen so far (or noise): assume latency grows in proportion.
            self.a, self.b = 0.0, sl / sn if sn > 0 else 0.0
            return
        a = (sl - b * sn) / s0
        if a < 0.0:
            a, b = 0.0, snl / snn
        self.a, self.b = a, b

    def predict(self, n: int) -> float:
        """Predicted latency in seconds of a batch of ``n``."""
        return self.a + self.b * n
