"""A cold ``digitwin fit`` against a cold script that fits one network, each a new process.

What a user waits for: ``digitwin fit`` on ErCo2 (the paper's coarse data, 808 points, 30
trials, the ensemble refit and the save included), started as a new process, against a new
process that imports Keras and fits one 5x160 ReLU network for 500 epochs at batch 128 (the
paper's network; Adam, MSE, the same data standardised). The two run in turn, never at the same
time, ``--pairs`` times; each pair's ratio compares runs made seconds apart, so it is what
counts on a machine shared with other work (absolute times are noisy there). Each pair also
names the best trial's shape: after the search each process trains its share of the twin's
networks of that shape, so the shape the search picked moves the fit's time.

    python benchmarks/bench_cold_fit.py [--pairs 3] [--workers 2] [--trials 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile

from _common import DIGITWIN, machine, require_shared, run_cold

#: The reference: what a user fitting one network by hand runs (plain Keras, no digitwin).
REFERENCE = """
import sys
import time

start = time.perf_counter()
import keras
import numpy as np
import pandas as pd

frame = pd.read_csv(sys.argv[1])
x = frame.iloc[:, :2].to_numpy(dtype=float)
y = frame.iloc[:, 2].to_numpy(dtype=float)
x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype("float32")
y = ((y - y.mean()) / y.std()).astype("float32")
imported = time.perf_counter() - start
model = keras.Sequential(
    [keras.Input(shape=(2,))]
    + [keras.layers.Dense(160, activation="relu") for _ in range(5)]
    + [keras.layers.Dense(1)]
)
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
model.fit(x, y, batch_size=128, epochs=500, verbose=0)
print(f"import {imported:.1f} s, loss {model.evaluate(x, y, verbose=0):.3g}")
"""


def timed(command: list[str], cwd: str) -> tuple[float, str]:
    """Run ``command`` as a new process; its wall time and the last line it printed."""
    elapsed, output = run_cold(command, cwd)
    lines = output.strip().splitlines()
    return elapsed, lines[-1] if lines else ""


def best_shape(twin_dir: str) -> str:
    """The shape of the best trial's networks in a saved twin (see the module's docstring)."""
    with open(os.path.join(twin_dir, "twin.json"), encoding="utf-8") as f:
        members = json.load(f)["members"]
    params = next((m["params"] for m in members if m["trial"] is not None), None)
    if params is None:
        return "no trial's networks"
    return f"best trial {params['n_layers']}x{params['n_units']}, batch {params['batch_size']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fit-args",
        default="",
        help="more `digitwin fit` flags, one string, e.g. '--ensemble 8' (default: none)",
    )
    args = parser.parse_args()
    data = str(require_shared("traindata_Section3_1.csv"))
    print(f"# cold digitwin fit vs a cold one-network script, in turn — {machine()}")
    print(f"# load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    ratios = []
    with tempfile.TemporaryDirectory(prefix="bench-cold-fit-") as tmp:
        for pair in range(1, args.pairs + 1):
            out = os.path.join(tmp, f"twin-{pair}")
            fit, fit_line = timed(
                [
                    DIGITWIN,
                    "fit",
                    data,
                    "--features",
                    "X1_demo1",
                    "X2_demo1",
                    "--target",
                    "Y_demo1",
                    "--trials",
                    str(args.trials),
                    "--workers",
                    str(args.workers),
                    "--seed",
                    str(args.seed + pair),
                    "--out",
                    out,
                    *shlex.split(args.fit_args),
                ],
                cwd=tmp,
            )
            ref, ref_line = timed([sys.executable, "-c", REFERENCE, data], cwd=tmp)
            ratios.append(fit / ref)
            print(
                f"pair {pair}: digitwin fit {fit:.1f} s ({fit_line.strip()}; {best_shape(out)}); "
                f"one-network script {ref:.1f} s ({ref_line}); ratio {fit / ref:.2f}",
                flush=True,
            )
    print(f"median ratio over {len(ratios)} pairs: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
