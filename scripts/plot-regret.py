"""Draw the regret curves of the built-in selection policies into docs/images/regret.png.

    python scripts/plot-regret.py [--out docs/images/regret.png]

The stream is the one the tests use (``clipper_core.testing.selection.simulate``): three models
right 60 %, 75 % and 90 % of the time, independent errors over 10 classes, labels arriving 50
queries late. Regret is the 90 % model's accuracy minus the answer's correctness, summed.
Needs matplotlib (``pip install -r bench/requirements.txt``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from clipper_core import plugins
from clipper_core.testing.selection import simulate

ACCURACY = {"m60:1": 0.6, "m75:1": 0.75, "m90:1": 0.9}
POLICIES = ("exp3", "epsilon_greedy", "ucb1", "thompson", "exp4", "ensemble", "default")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/regret.png"))
    parser.add_argument("--queries", type=int, default=6000)
    args = parser.parse_args()
    registry = plugins.selection_policies()
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in POLICIES:
        result = simulate(registry.get(name)(), ACCURACY, queries=args.queries, delay=50,
                          seed=11, classes=10)
        ax.plot(result.regret, label=name)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("queries")
    ax.set_ylabel("cumulative regret against the 90 % model")
    ax.set_title("Selection policies, models right 60/75/90 %, feedback 50 queries late")
    ax.legend()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
