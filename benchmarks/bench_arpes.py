"""The 29 977-point ARPES map (paper §3.4): wall time of a 30-trial search.

python benchmarks/bench_arpes.py [--trials 30] [--workers 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
from _common import machine, require_shared

from bluesky_digitwin import DigitalTwin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[None])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frame = pd.read_csv(require_shared("traindata_Section3_4.csv"))
    frame.columns = ["theta", "phi", "I"]
    print(f"# ARPES map, {len(frame)} points, {args.trials} trials — {machine()}")
    for workers in args.workers:
        start = time.perf_counter()
        twin = DigitalTwin.fit(
            frame, ["theta", "phi"], "I", n_trials=args.trials, n_workers=workers, seed=args.seed
        )
        wall = time.perf_counter() - start
        meta = twin.metadata["search"]
        best = twin.metadata["members"][0]
        print(
            f"workers {workers or 'default (one per core)'}: {wall:.0f} s wall "
            f"({wall / 60:.1f} min; search {meta['wall_time_s']:.0f} s), "
            f"{meta['n_complete']} complete / {meta['n_pruned']} pruned, validation RMSE "
            f"{best['validation_rmse']:.3g} (R^2 {best['validation_r2']:.4f}), "
            f"best {best['params']}"
        )


if __name__ == "__main__":
    main()
