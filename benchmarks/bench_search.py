"""The whole 30-trial search against one 500-epoch ``model.fit`` of a 5x160 network.

Both in the same run, on the same data (ErCo2 coarse, 808 points): first the reference (Keras
``model.fit``, 500 epochs, batch size 64 = the paper's code's first choice for this data size,
unless --ref-batch says otherwise), then ``DigitalTwin.fit`` with default settings (30 trials,
one worker per core, the ensemble refit included).

    python benchmarks/bench_search.py [--trials 30] [--ref-batch 64 128] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import erco2_coarse, machine

from bluesky_digitwin import DigitalTwin
from bluesky_digitwin.surrogate.network import Scaling, build_mlp
from bluesky_digitwin.tensorflow_runtime import keras


def reference_fit(x: np.ndarray, y: np.ndarray, batch: int) -> float:
    scaling = Scaling.from_data(x, y)
    model = build_mlp(2, 5, 160, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    start = time.perf_counter()
    model.fit(scaling.scale_x(x), scaling.scale_y(y), batch_size=batch, epochs=500, verbose=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--ref-batch", type=int, nargs="+", default=[64])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frame = erco2_coarse()
    x, y = frame[["T", "H"]].to_numpy(), frame["M"].to_numpy()

    references = {batch: reference_fit(x, y, batch) for batch in args.ref_batch}
    start = time.perf_counter()
    twin = DigitalTwin.fit(frame, ["T", "H"], "M", n_trials=args.trials, seed=args.seed)
    search = time.perf_counter() - start
    meta = twin.metadata["search"]
    print(f"# {args.trials}-trial search vs one 500-epoch model.fit (5x160) — {machine()}")
    print(
        f"search: {search:.1f} s wall ({meta['n_trials']} trials: {meta['n_complete']} complete, "
        f"{meta['n_pruned']} pruned; search part {meta['wall_time_s']:.1f} s, the rest is the "
        f"ensemble refit), best validation RMSE {twin.validation_rmse:.3g} emu"
    )
    for batch, ref in references.items():
        print(f"model.fit 500 epochs, batch {batch}: {ref:.1f} s -> ratio {search / ref:.2f}")


if __name__ == "__main__":
    main()
