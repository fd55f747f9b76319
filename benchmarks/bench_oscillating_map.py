"""A densely scanned oscillating map: does the twin beat linear interpolation between the lines?

ophyd-async's own simulated instruments, as issue 11 tried them: ``ophyd_async.sim``'s
``SimStage`` and a one-channel ``SimPointDetector`` (counts = (sin x + cos(xy + 10) + 2) / 4 x
10 000 x the acquire time, 0.1 s by default), a 25 x 13 ``grid_scan`` over [-3, 3]^2 under a
real RunEngine. The scan's documents go to a ``TwinCallback()`` with default settings (features
and target from the plan's hints, the default search and ensemble; ``--fit-options`` adds
``DigitalTwin.fit`` options), once per seed: the scan runs once and its documents are replayed
to a new callback for each seed, so every seed learns from the same points.

Scored on 40 points between the grid lines (cell centres, drawn once): R^2 of the twin, of
linear interpolation and of the thin-plate RBF (``analysis.baselines``) fitted to the same scan,
against the noiseless pattern. Target (issue 11): the twin's R^2 at least linear's.

    python benchmarks/bench_oscillating_map.py [--seeds 0 1 2 3 4] [--fit-options JSON]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from typing import Any

import bluesky.plan_stubs as bps
import numpy as np
from _common import fit_options_from_json, machine
from bluesky import RunEngine
from bluesky.plans import grid_scan
from ophyd_async.core import init_devices
from ophyd_async.sim import PatternGenerator, SimPointDetector, SimStage

from bluesky_digitwin.analysis.baselines import LinearInterpolator, RBFBaseline
from bluesky_digitwin.callbacks import TwinCallback

X_POINTS, Y_POINTS, SPAN = 25, 13, 3.0
N_BETWEEN = 40
ACQUIRE_TIME = 0.1  # SimPointDetector's default


def pattern_counts(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The detector's noiseless channel 1 (ophyd_async.sim's interesting pattern), counts."""
    return (np.sin(x) + np.cos(x * y + 10) + 2) / 4 * 10_000 * ACQUIRE_TIME


def scan_documents() -> list[tuple[str, dict[str, Any]]]:
    """Run the grid scan once under a real RunEngine; its documents, in order."""
    RE = RunEngine({})
    documents: list[tuple[str, dict[str, Any]]] = []
    pattern = PatternGenerator()
    with init_devices():
        stage = SimStage(pattern)
        det = SimPointDetector(pattern, num_channels=1)
    # Instant moves (velocity 0, as SimMotor(instant=True)): the stage's 1 mm/s moves would
    # make the scan last minutes without changing a reading.
    RE(bps.mv(stage.x.velocity, 0.0, stage.y.velocity, 0.0))
    RE.subscribe(lambda name, doc: documents.append((name, doc)))
    RE(grid_scan([det], stage.x, -SPAN, SPAN, X_POINTS, stage.y, -SPAN, SPAN, Y_POINTS))
    return documents


def between_points(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``N_BETWEEN`` distinct cell centres of the grid: off every measured line."""
    xs = np.linspace(-SPAN, SPAN, X_POINTS)
    ys = np.linspace(-SPAN, SPAN, Y_POINTS)
    cx, cy = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2
    cells = np.random.default_rng(seed).choice(cx.size * cy.size, N_BETWEEN, replace=False)
    return cx[cells // cy.size], cy[cells % cy.size]


def r2(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(1 - np.sum((predicted - truth) ** 2) / np.sum((truth - truth.mean()) ** 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--fit-options", default="{}", help="JSON of DigitalTwin.fit options")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a training may take")
    args = parser.parse_args()
    options = fit_options_from_json(json.loads(args.fit_options))
    print(f"# oscillating map: ophyd_async.sim, 25 x 13 grid_scan — {machine()}", flush=True)
    start = time.perf_counter()
    documents = scan_documents()
    print(f"# scan: {len(documents)} documents in {time.perf_counter() - start:.1f} s", flush=True)

    x, y = between_points()
    truth = pattern_counts(x, y)
    twins = []
    for seed in args.seeds:
        cb = TwinCallback(fit_options={**options, "seed": seed})
        try:
            for name, doc in documents:
                cb(name, doc)
            fit_start = time.perf_counter()
            twin = cb.wait(timeout=args.timeout)
            fit_seconds = time.perf_counter() - fit_start
            x_name, y_name = twin.features
            if seed == args.seeds[0]:
                data = cb.buffer.snapshot()
                scores = {}
                for label, model in (
                    ("linear", LinearInterpolator.fit(data, twin.features, twin.target)),
                    ("thin-plate RBF", RBFBaseline.fit(data, twin.features, twin.target)),
                ):
                    guess = model.predict({x_name: x, y_name: y}, warn=False)[twin.target]
                    scores[label] = r2(guess.values, truth)
                print(
                    f"# features {twin.features}, target {twin.target!r}, "
                    f"{data.sizes['point']} points; baselines R^2 "
                    + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()),
                    flush=True,
                )
            predicted = twin.predict({x_name: x, y_name: y}, warn=False)[twin.target].values
            score = r2(predicted, truth)
            twins.append(score)
            print(
                f"seed {seed}: twin R^2 {score:.4f} (linear {scores['linear']:.4f}), "
                f"training {fit_seconds:.0f} s, {twin.ensemble_size} networks",
                flush=True,
            )
        finally:
            cb.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"twin R^2 median {statistics.median(twins):.4f}, worst {min(twins):.4f} over "
        f"{len(twins)} seeds; linear {scores['linear']:.4f}, thin-plate RBF "
        f"{scores['thin-plate RBF']:.4f}; peak memory of this process {peak:.0f} MiB"
    )


if __name__ == "__main__":
    main()
