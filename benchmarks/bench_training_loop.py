"""The compiled training loop against Keras ``model.fit`` at equal epochs.

Same data (ErCo2 coarse set, 808 points, 80/20 split with a validation loss every epoch in
both), same network (5 hidden layers of 160 ReLU nodes), same optimizer (Adam), same batch size,
in one process, one after the other.

    python benchmarks/bench_training_loop.py [--epochs 100] [--batch-sizes 64 128 256]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import SHARED_DATA, erco2_coarse, machine

from bluesky_digitwin.surrogate.network import Scaling, build_mlp
from bluesky_digitwin.surrogate.training import TrainConfig, train
from bluesky_digitwin.tensorflow_runtime import keras


def load_xy() -> tuple[np.ndarray, np.ndarray, str]:
    if (SHARED_DATA / "traindata_Section3_1.csv").is_file():
        frame = erco2_coarse()
        return frame[["T", "H"]].to_numpy(), frame["M"].to_numpy(), "ErCo2 coarse (808 points)"
    from bluesky_digitwin.sim import coarse_magnetization

    ds = coarse_magnetization()
    x = np.column_stack([ds["T"].values, ds["H"].values])
    return x, ds["M"].values, "simulated ErCo2-like magnet (808 points)"


def time_fit(xs, ys, xv, yv, batch, epochs) -> float:
    model = build_mlp(2, 5, 160, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    start = time.perf_counter()
    model.fit(xs, ys, batch_size=batch, epochs=epochs, verbose=0, validation_data=(xv, yv))
    return time.perf_counter() - start


def time_loop(xs, ys, xv, yv, batch, epochs) -> float:
    model = build_mlp(2, 5, 160, seed=1)
    config = TrainConfig(max_epochs=epochs, patience=epochs + 1, lr_drop_epoch=epochs)
    start = time.perf_counter()
    train(model, xs, ys, xv, yv, batch_size=batch, learning_rate=1e-3, config=config)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256])
    args = parser.parse_args()
    x, y, name = load_xy()
    scaling = Scaling.from_data(x, y)
    order = np.random.default_rng(0).permutation(len(y))
    n_val = len(y) // 5
    xs, ys = scaling.scale_x(x[order[n_val:]]), scaling.scale_y(y[order[n_val:]])
    xv, yv = scaling.scale_x(x[order[:n_val]]), scaling.scale_y(y[order[:n_val]])
    short = 10
    print(f"# training loop vs model.fit, 5x160 net, {name}, {args.epochs} epochs — {machine()}")
    print(
        "| batch | model.fit ms/epoch | loop ms/epoch | per-epoch speed-up | "
        f"model.fit {args.epochs} ep. cold s | loop {args.epochs} ep. cold s | cold speed-up |"
    )
    print("|---|---|---|---|---|---|---|")
    for batch in args.batch_sizes:
        # Per-epoch cost without the one-off tracing: difference of a long and a short run.
        fit_long = time_fit(xs, ys, xv, yv, batch, args.epochs)
        fit_short = time_fit(xs, ys, xv, yv, batch, short)
        loop_long = time_loop(xs, ys, xv, yv, batch, args.epochs)
        loop_short = time_loop(xs, ys, xv, yv, batch, short)
        fit_epoch = (fit_long - fit_short) / (args.epochs - short)
        loop_epoch = (loop_long - loop_short) / (args.epochs - short)
        print(
            f"| {batch} | {fit_epoch * 1e3:.1f} | {loop_epoch * 1e3:.1f} | "
            f"{fit_epoch / loop_epoch:.1f}x | {fit_long:.2f} | {loop_long:.2f} | "
            f"{fit_long / loop_long:.1f}x |"
        )


if __name__ == "__main__":
    main()
