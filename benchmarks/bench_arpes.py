"""The 29 977-point ARPES map (paper §3.4): wall time of a 30-trial search, and worker scaling.

python benchmarks/bench_arpes.py [--trials 30] [--workers 1 2] [--seed 0] [--model 4 8 16]
                                 [--reference-points 8192] [--fit-options JSON]
python benchmarks/bench_arpes.py --cold [--workers 2] [--fit-args "--fourier-scale 10"]

Each worker count is one whole ``DigitalTwin.fit`` (search, then the ensemble's refit), measured
in turn; ``--fit-options`` (JSON, as for ``bench_fidelity.py``) measures another recipe, e.g.
``'{"ensemble": {"retrain": false, "size": 5, "refit_epochs": 30, "refit_rate": null}}'``
for the paper's ensemble (``--paper-ensemble``). Worker counts
beyond the cores cannot be measured here; for those the script states a
model: the trials measured with the most workers, replayed in the order they started on W
workers (each trial starting when a worker frees, as Optuna workers take the next trial), plus
the measured time outside the search. It assumes the same trials (in reality TPE's choices
depend on how many trials have finished when each starts) and one core per worker.

``--cold`` times what a user waits for instead: ``digitwin fit`` started as a new process
(interpreter, imports, reading the CSV, TensorFlow's start-up, the search, the ensemble and the
save), once per worker count, with ``--reference-points`` as ``--epoch-points`` and more flags
from ``--fit-args``. The validation R² comes from the saved ``twin.json``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import shlex
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd
from _common import (
    DIGITWIN,
    fit_options_from_json,
    machine,
    peak_memory_mib,
    require_shared,
    run_cold,
)

from bluesky_digitwin import DigitalTwin, TrainConfig
from bluesky_digitwin.surrogate.search import open_storage


def _durations(journal: Path, study_name: str) -> list[float]:
    """Seconds of each finished trial, in the order the trials started."""
    study = optuna.load_study(study_name=study_name, storage=open_storage(journal))
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    trials.sort(key=lambda t: t.datetime_start)
    return [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]


def _twin_r2(meta: dict) -> str:
    """The twin's R² on the held-out points: its networks' mean, what a user predicts with
    (recorded since the summary stopped giving the first network's as the twin's)."""
    r2 = (meta.get("holdout") or {}).get("twin_r2")
    return "R^2 not recorded" if r2 is None else f"R^2 {r2:.4f}"


def replay(durations: list[float], workers: int) -> float:
    """Wall time of running ``durations`` in order on ``workers`` (list scheduling)."""
    free_at = [0.0] * workers
    end = 0.0
    for seconds in durations:
        start = heapq.heappop(free_at)
        heapq.heappush(free_at, start + seconds)
        end = max(end, start + seconds)
    return end


def cold(args: argparse.Namespace) -> None:
    """Each worker count: one ``digitwin fit`` as a new process, timed from outside."""
    data = str(require_shared("traindata_Section3_4.csv"))
    print(
        f"# ARPES map, cold `digitwin fit`, {args.trials} trials, --epoch-points "
        f"{args.reference_points}, flags {args.fit_args or 'none'} — {machine()}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-arpes-") as tmp:
        for workers in args.workers:
            out = Path(tmp) / f"twin-{workers}"
            command = [
                DIGITWIN,
                "fit",
                data,
                "--features",
                "X1_demo4",
                "X2_demo4",
                "--target",
                "Y_demo4",
                "--trials",
                str(args.trials),
                "--workers",
                str(workers),
                "--seed",
                str(args.seed),
                "--epoch-points",
                str(args.reference_points),
                "--quiet",
                "--out",
                str(out),
                *shlex.split(args.fit_args),
            ]
            wall, _ = run_cold(command, cwd=tmp)
            meta = json.loads((out / "twin.json").read_text())
            search, members = meta["search"], meta["members"]
            r2 = [m["validation_r2"] for m in members]
            print(
                f"workers {workers}: {wall:.0f} s wall ({wall / 60:.1f} min; search "
                f"{search['wall_time_s']:.0f} s), {search['n_complete']} complete / "
                f"{search['n_pruned']} pruned, best validation R^2 {r2[0]:.4f}, ensemble of "
                f"{len(members)} R^2 {min(r2):.4f}–{max(r2):.4f}, the twin (their mean) "
                f"{_twin_r2(meta)}; peak memory of the command "
                f"{peak_memory_mib()['children']:.0f} MiB",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=int, nargs="*", default=[4, 8, 16])
    parser.add_argument(
        "--reference-points",
        type=int,
        default=TrainConfig().reference_points,
        help="TrainConfig.reference_points: epochs are counted in passes over this many points",
    )
    parser.add_argument(
        "--fit-options",
        default="{}",
        help="more DigitalTwin.fit options as JSON (default: none, the default twin)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="time `digitwin fit` as a new process instead of DigitalTwin.fit in this one",
    )
    parser.add_argument(
        "--fit-args",
        default="",
        help="with --cold: more `digitwin fit` flags, one string, e.g. '--fourier-scale 10'",
    )
    args = parser.parse_args()
    if args.cold:
        cold(args)
        return
    options = fit_options_from_json(json.loads(args.fit_options))
    frame = pd.read_csv(require_shared("traindata_Section3_4.csv"))
    frame.columns = ["theta", "phi", "I"]
    print(
        f"# ARPES map, {len(frame)} points, {args.trials} trials, epochs counted per "
        f"{args.reference_points} points, fit options {args.fit_options} — {machine()}"
    )
    last = None
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            journal = Path(tmp) / f"arpes-{workers}.journal"
            start = time.perf_counter()
            twin = DigitalTwin.fit(
                frame,
                ["theta", "phi"],
                "I",
                n_trials=args.trials,
                n_workers=workers,
                seed=args.seed,
                storage=journal,
                study_name="arpes",
                train_config=TrainConfig(reference_points=args.reference_points),
                **options,
            )
            wall = time.perf_counter() - start
            meta = twin.metadata["search"]
            best = twin.metadata["members"][0]
            durations = _durations(journal, "arpes")
            print(
                f"workers {workers}: {wall:.0f} s wall ({wall / 60:.1f} min; search "
                f"{meta['wall_time_s']:.0f} s, trials {sum(durations):.0f} s of training in "
                f"all), {meta['n_complete']} complete / {meta['n_pruned']} pruned, validation "
                f"RMSE {best['validation_rmse']:.3g} (R^2 {best['validation_r2']:.4f}), "
                f"ensemble R^2 {min(m['validation_r2'] for m in twin.metadata['members']):.4f}"
                f"–{max(m['validation_r2'] for m in twin.metadata['members']):.4f}, "
                f"the twin (their mean) {_twin_r2(twin.metadata)}, "
                f"best {best['params']}",
                flush=True,
            )
            memory = peak_memory_mib()
            print(
                f"  peak memory so far: this process {memory['self']:.0f} MiB, its largest "
                f"child {memory['children']:.0f} MiB",
                flush=True,
            )
            last = (workers, wall, meta["wall_time_s"], durations)
    if last is None or not args.model:
        return
    workers, wall, search_wall, durations = last
    outside = wall - search_wall  # data checks, TensorFlow start, the ensemble's refit
    measured = replay(durations, workers)
    print(
        f"model from the {workers}-worker run: replay on {workers} workers gives "
        f"{measured + outside:.0f} s (measured {wall:.0f} s); {outside:.0f} s outside the search"
    )
    for w in args.model:
        modeled = replay(durations, w) + outside
        print(f"  {w:>2} workers (modeled): {modeled:.0f} s ({modeled / 60:.1f} min)")


if __name__ == "__main__":
    main()
