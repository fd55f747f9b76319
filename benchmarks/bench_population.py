"""Many networks at once: the population trainer against training networks one by one.

k networks of 5 x 160 ReLU units on 808 points (ErCo2's size; synthetic data of that shape, so
the shared data are not needed), batch 64, Adam. Per-epoch times exclude the one-off tracing:
they are the difference of a long and a short run divided by the extra epochs. The FLOP count
of an epoch (forward and backward of every batch, plus the validation pass) and the machine's
matmul rate measured in the same run say how close the loop comes to the hardware's limit.

    python benchmarks/bench_population.py [--k 1 4 8 16] [--batch 64]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
from _common import machine

from bluesky_digitwin.surrogate.network import build_mlp
from bluesky_digitwin.surrogate.population import train_population
from bluesky_digitwin.surrogate.training import TrainConfig, train

LAYERS, UNITS, FEATURES, POINTS = 5, 160, 2, 808
SHORT, LONG = 10, 60


def flops_per_epoch(n_train: int, n_val: int) -> float:
    """Floating-point operations of one epoch of one network (multiply-add = 2)."""
    widths = [FEATURES] + [UNITS] * LAYERS + [1]
    macs = sum(a * b for a, b in itertools.pairwise(widths))
    # Training: forward, and a backward pass of about twice the forward's cost.
    return 2 * macs * (3 * n_train + n_val)


def matmul_gflops(tf, batch: int) -> float:
    """The machine's rate for this loop's typical matmul (batch x 160 x 160), GFLOP/s."""
    a = tf.random.normal((batch, UNITS))
    b = tf.random.normal((UNITS, UNITS))

    @tf.function
    def many(a, b):
        for _ in tf.range(2000):
            a = tf.matmul(a, b) * 1e-3
        return a

    many(a, b)
    start = time.perf_counter()
    many(a, b).numpy()
    return 2000 * 2 * batch * UNITS * UNITS / (time.perf_counter() - start) / 1e9


def data() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(POINTS, FEATURES)).astype(np.float32)
    y = (np.tanh(3 * x[:, 0] - x[:, 1]) + 0.2 * x[:, 1] ** 2).astype(np.float32)
    n_val = POINTS // 5
    return x[n_val:], y[n_val:], x[:n_val], y[:n_val]


def timed(run, epochs: int) -> float:
    start = time.perf_counter()
    run(TrainConfig(max_epochs=epochs, patience=10**6, lr_drop_epoch=10**6, chunk_epochs=10))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    from bluesky_digitwin.tensorflow_runtime import tf

    x, y, xv, yv = data()
    flops = flops_per_epoch(len(x), len(xv))
    peak = matmul_gflops(tf, args.batch)

    def alone(config: TrainConfig) -> None:
        model = build_mlp(FEATURES, LAYERS, UNITS, seed=0)
        train(model, x, y, xv, yv, batch_size=args.batch, learning_rate=1e-3, config=config)

    one = (timed(alone, LONG) - timed(alone, SHORT)) / (LONG - SHORT)
    print(f"# population trainer, {LAYERS}x{UNITS} ReLU, {POINTS} points, batch {args.batch}")
    print(f"# {machine()}; one epoch of one network = {flops / 1e9:.2f} GFLOP")
    print(f"# matmul {args.batch}x{UNITS}x{UNITS} alone: {peak:.0f} GFLOP/s in this run")
    print(f"# train(), one network: {one * 1e3:.1f} ms/epoch ({flops / one / 1e9:.0f} GFLOP/s)")
    print("| k | population ms/epoch | per network | k x train() ms/epoch | speed-up | GFLOP/s |")
    print("|---|---|---|---|---|---|")
    for k in args.k:

        def together(config: TrainConfig, k: int = k) -> None:
            models = [build_mlp(FEATURES, LAYERS, UNITS, seed=i) for i in range(k)]
            train_population(
                models,
                x,
                y,
                xv,
                yv,
                batch_size=args.batch,
                learning_rates=[1e-3] * k,
                seeds=list(range(k)),
                config=config,
            )

        per_epoch = (timed(together, LONG) - timed(together, SHORT)) / (LONG - SHORT)
        print(
            f"| {k} | {per_epoch * 1e3:.1f} | {per_epoch / k * 1e3:.1f} | {k * one * 1e3:.1f} "
            f"| {k * one / per_epoch:.1f}x | {k * flops / per_epoch / 1e9:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
