"""Many networks at once: the population trainer against training networks one by one.

k networks of 5 x 160 ReLU units (``--activation``) on 808 points (ErCo2's size; synthetic data
of that shape, so the shared data are not needed), batch 64, Adam. Per-epoch times exclude the
one-off tracing: they are the difference of a long and a short run divided by the extra epochs.
The FLOP count of an epoch (forward and backward of every batch, plus the validation pass) and
the machine's matmul rate measured in the same run say how close the loop comes to the
hardware's limit.

    python benchmarks/bench_population.py [--k 1 4 8 16] [--batch 64] [--threads 1]
        [--precision float32] [--activation silu]

``--threads 1`` runs TensorFlow on one thread, as each search worker of a two-worker fit does.
``--precision`` is the population's ``TrainConfig.precision`` (default ``auto``: bfloat16
hidden matmuls where the CPU has them); ``train()`` is float32 whatever it says. Started with
``TF_SET_ONEDNN_FPMATH_MODE=BF16`` in the environment, the population's bfloat16 matmuls run
as in ``digitwin fit`` and its workers: inside oneDNN, without casts (the header says which).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from dataclasses import replace

import numpy as np
from _common import machine

from bluesky_digitwin.processes import THREADS_ENV
from bluesky_digitwin.surrogate.network import ACTIVATIONS, build_mlp
from bluesky_digitwin.surrogate.population import train_population
from bluesky_digitwin.surrogate.precision import PRECISIONS, hidden_matmuls, resolve_precision
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


def per_epoch(run, repeats: int) -> float:
    """Seconds an epoch: the median over ``repeats`` of (long run - short run) / extra epochs.

    A first short run comes before any timing. The population trainer keeps its compiled
    loop for the next run of the same shape (as a search worker does), so without it the
    first timed run alone would pay the tracing, and the difference would count it as epochs.
    """
    timed(run, SHORT)
    return statistics.median(
        (timed(run, LONG) - timed(run, SHORT)) / (LONG - SHORT) for _ in range(repeats)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed pairs of runs per row")
    parser.add_argument(
        "--threads", type=int, help="TensorFlow's threads (default: its own choice, all cores)"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the population's TrainConfig.precision (train() is float32 whatever it says)",
    )
    parser.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        default="relu",
        help="the networks' hidden activation (the twin's default networks are SiLU)",
    )
    args = parser.parse_args()
    if args.threads:
        # Read when TensorFlow starts, as in a search worker.
        os.environ[THREADS_ENV] = str(args.threads)
    from bluesky_digitwin.tensorflow_runtime import tf

    x, y, xv, yv = data()
    flops = flops_per_epoch(len(x), len(xv))
    peak = matmul_gflops(tf, args.batch)

    def alone(config: TrainConfig) -> None:
        model = build_mlp(FEATURES, LAYERS, UNITS, activation=args.activation, seed=0)
        train(model, x, y, xv, yv, batch_size=args.batch, learning_rate=1e-3, config=config)

    one = per_epoch(alone, args.repeats)
    print(
        f"# population trainer, {LAYERS}x{UNITS} {args.activation}, {POINTS} points, "
        f"batch {args.batch}"
    )
    print(
        f"# {machine()}; TensorFlow threads: {args.threads or 'all'}; "
        f"one epoch of one network = {flops / 1e9:.2f} GFLOP; population's precision: "
        f"{args.precision} ({resolve_precision(args.precision)} here, hidden matmuls "
        f"{hidden_matmuls(args.precision)})"
    )
    print(f"# matmul {args.batch}x{UNITS}x{UNITS} alone: {peak:.0f} GFLOP/s in this run")
    print(f"# train(), one network: {one * 1e3:.1f} ms/epoch ({flops / one / 1e9:.0f} GFLOP/s)")
    print("| k | population ms/epoch | per network | k x train() ms/epoch | speed-up | GFLOP/s |")
    print("|---|---|---|---|---|---|")
    for k in args.k:

        def together(config: TrainConfig, k: int = k) -> None:
            models = [
                build_mlp(FEATURES, LAYERS, UNITS, activation=args.activation, seed=i)
                for i in range(k)
            ]
            train_population(
                models,
                x,
                y,
                xv,
                yv,
                batch_size=args.batch,
                learning_rates=[1e-3] * k,
                seeds=list(range(k)),
                config=replace(config, precision=args.precision),
            )

        seconds = per_epoch(together, args.repeats)
        print(
            f"| {k} | {seconds * 1e3:.1f} | {seconds / k * 1e3:.1f} | {k * one * 1e3:.1f} "
            f"| {k * one / seconds:.1f}x | {k * flops / seconds / 1e9:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
