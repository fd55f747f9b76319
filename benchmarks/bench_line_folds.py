"""Can a twin choose its own networks by holding out whole lines, one per network?

The fidelity runs showed that the best group of networks differs by material (ErCo2: the
ReLU reference; the simulated first-order magnets: the searched SiLU shape), and that the
pointwise validation which ranks trials cannot tell the groups apart. This benchmark measures
a cost-neutral way to tell them apart: **line folds**. Each network of a group early-stops on
one interior scan line it never trained on, a different line for each network in turn (the
group's k networks cover the interior lines), and then refits on all points as today. Its
error on that line is an out-of-fold estimate of the error *between* lines, at no extra
training: the group's networks are trained once, as today, only on different subsets.

For each saved twin of ``bench_fidelity.py --save-twins`` (which gives the searched shape of
that case and seed), every group (the searched shape, the ReLU and the SiLU reference) is
trained with line folds, and the derived quantity is scored for:

- each group alone (equal weights within the group);
- ``mix``: the searched shape and the ReLU reference, equal weights (today's recipe, folds);
- ``chosen``: the group with the lowest out-of-fold line error alone;
- ``weighted``: the groups weighted by the inverse of their out-of-fold line MSE.

None of these looks at the truth. The baselines are the case's, as in bench_fidelity.py.

    DIGITWIN_SHARED_DATA=../shared/data/mat_interp python benchmarks/bench_line_folds.py \\
        benchmarks/_work/twins-lines --cases erco2 --out benchmarks/_work/folds-erco2.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from bench_fidelity import Case, baselines, build_cases

from bluesky_digitwin.data import prepare_training_data
from bluesky_digitwin.prediction import prediction_dataset
from bluesky_digitwin.scan_lines import slow_axis_lines
from bluesky_digitwin.surrogate.ensemble import REFERENCE_CONFIGURATION, MemberTraining
from bluesky_digitwin.surrogate.network import Scaling, build_mlp
from bluesky_digitwin.surrogate.population import train_group
from bluesky_digitwin.surrogate.training import TrainConfig

#: Networks per group, as in the default twin (6 of the searched shape, 6 reference).
GROUP_SIZE = 6


@dataclass(frozen=True)
class Refit:
    """After the fold: epochs on all points, at the initial learning rate over ``divisor``."""

    epochs: int = 30
    divisor: float = 5.0


@dataclass
class FoldedGroup:
    """A group's networks trained with line folds, and their out-of-fold line error."""

    name: str
    params: dict[str, Any]
    cores: list[Any]
    #: Mean over the networks of each one's MSE (scaled) on the line it held out.
    fold_mse: float


class Mixture:
    """A Predictor: a weighted mean of several groups' networks (raw units)."""

    def __init__(
        self, groups: Sequence[FoldedGroup], weights: Sequence[float], scaling: Scaling, case: Case
    ):
        self.groups, self.weights, self.scaling, self.case = groups, weights, scaling, case
        self.ranges = {
            f: (float(case.data[f].min()), float(case.data[f].max())) for f in case.features
        }

    def predict(self, points: Any, *, warn: bool = True) -> xr.Dataset:
        def evaluate(x: np.ndarray, outside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            xs = self.scaling.scale_x(x).astype(np.float32)
            total = np.zeros(len(x))
            for group, w in zip(self.groups, self.weights, strict=True):
                outs = [np.asarray(c(xs, training=False)).reshape(-1) for c in group.cores]
                total += w * np.mean(outs, axis=0)
            y = total * self.scaling.y_std + self.scaling.y_mean
            return y, np.zeros(len(x))

        return prediction_dataset(
            points,
            list(self.case.features),
            self.case.target,
            {},
            self.ranges,
            evaluate,
            warn=False,
        )


def train_folded_group(
    name: str,
    params: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    held_out: Sequence[np.ndarray],
    seed: int,
    refit: Refit,
) -> FoldedGroup:
    """``GROUP_SIZE`` networks of ``params``; network j early-stops on ``held_out[j]``."""
    config = TrainConfig()
    cores, fold_mse = [], []
    for j in range(GROUP_SIZE):
        held = held_out[j]
        member_seed = seed * 1_000_003 + j
        core = build_mlp(
            x.shape[1],
            int(params["n_layers"]),
            int(params["n_units"]),
            l2=float(params.get("l2", 0.0)),
            activation=str(params["activation"]),
            seed=member_seed,
        )
        batch = int(params["batch_size"])
        rate = float(params["learning_rate"])
        (result,) = train_group(
            [core],
            x[~held],
            y[~held],
            x[held],
            y[held],
            batch_size=batch,
            learning_rates=[rate],
            seeds=[member_seed],
            config=config,
        )
        fold_mse.append(result.best_loss)
        if refit.epochs > 0:
            # The product's refit (MemberTraining.refit_schedule), at the initial rate / divisor.
            training = MemberTraining(config, refit.epochs, 1.0 / refit.divisor)
            schedule, factor = training.refit_schedule()
            train_group(
                [core],
                x,
                y,
                None,
                None,
                batch_size=batch,
                learning_rates=[rate * factor],
                seeds=[member_seed + 1],
                config=schedule,
            )
        cores.append(core)
    return FoldedGroup(name, params, cores, float(np.mean(fold_mse)))


def run(
    case: Case, twin_dir: Path, seed: int, refit: Refit, groups: Sequence[str], holdout: str
) -> dict[str, Any]:
    meta = json.loads((twin_dir / "twin.json").read_text())
    searched = next(m["params"] for m in meta["members"] if m.get("trial") is not None)
    data = prepare_training_data(case.data, list(case.features), case.target)
    scaling = Scaling.from_data(data.x, data.y)
    x, y = scaling.scale_x(data.x).astype(np.float32), scaling.scale_y(data.y).astype(np.float32)
    lines = slow_axis_lines(data.x)
    if lines is None:
        raise SystemExit(f"{case.name}: no scan lines")
    line_of_point, n_lines = lines
    interior = np.arange(1, n_lines - 1)
    if holdout == "line-folds":
        held_out = [line_of_point == interior[j % len(interior)] for j in range(GROUP_SIZE)]
    else:
        # The search's split (SplitData.split, held-out points): the same for every network.
        order = np.random.default_rng(seed).permutation(len(y))
        held = np.zeros(len(y), bool)
        held[order[: round(len(y) * 0.2)]] = True
        held_out = [held] * GROUP_SIZE
    # The reference's batch as the default recipe gives it (>= 10 steps an epoch, <= 64).
    n_train = int(len(y) * 0.8)
    ref_batch = min(int(searched["batch_size"]), 64, max(16, n_train // 10))
    reference = {**REFERENCE_CONFIGURATION, "batch_size": ref_batch, "l2": 0.0}
    configs = {
        "searched": {**searched},
        "reference relu": {**reference, "activation": "relu"},
        "reference silu": {**reference, "activation": "silu"},
    }
    trained, seconds = {}, {}
    for name in groups:
        start = time.perf_counter()
        trained[name] = train_folded_group(name, configs[name], x, y, held_out, seed, refit)
        seconds[name] = time.perf_counter() - start
    pair = [trained["searched"], trained["reference relu"]]
    trio = list(trained.values())
    best_of_trio = min(trio, key=lambda g: g.fold_mse)
    best_of_pair = min(pair, key=lambda g: g.fold_mse)

    def inverse(gs: Sequence[FoldedGroup]) -> list[float]:
        w = np.array([1.0 / g.fold_mse for g in gs])
        return list(w / w.sum())

    mixtures = {
        **{f"{n} alone": Mixture([g], [1.0], scaling, case) for n, g in trained.items()},
        "mix (searched + relu ref)": Mixture(pair, [0.5, 0.5], scaling, case),
        "chosen of searched, relu ref": Mixture([best_of_pair], [1.0], scaling, case),
        "weighted searched, relu ref": Mixture(pair, inverse(pair), scaling, case),
        "chosen of three": Mixture([best_of_trio], [1.0], scaling, case),
        "weighted three": Mixture(trio, inverse(trio), scaling, case),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = {k: case.score(m) for k, m in mixtures.items()}
    return {
        "searched_params": searched,
        "fold_mse": {n: g.fold_mse for n, g in trained.items()},
        "chosen_of_pair": best_of_pair.name,
        "chosen_of_three": best_of_trio.name,
        "seconds": seconds,
        "scores": scores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("twins", type=Path, help="a --save-twins folder of bench_fidelity.py")
    parser.add_argument("--cases", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, required=True, help="JSON of every number")
    parser.add_argument("--refit-epochs", type=int, default=30, help="after the fold (30)")
    parser.add_argument(
        "--refit-divisor", type=float, default=5.0, help="refit rate = initial rate / this (5)"
    )
    parser.add_argument(
        "--groups",
        nargs="+",
        default=["searched", "reference relu", "reference silu"],
        help="which groups to train (the searched shape and the ReLU reference at least)",
    )
    parser.add_argument(
        "--holdout",
        choices=["line-folds", "points"],
        default="line-folds",
        help="each network holds out its own interior line, or all the search's 20%% of points",
    )
    args = parser.parse_args()
    refit = Refit(args.refit_epochs, args.refit_divisor)
    cases = {c.name: c for c in build_cases(args.cases, fast=False)}
    results: dict[str, Any] = {"command": " ".join(sys.argv), "cases": {}}
    for name, case in cases.items():
        results["cases"][name] = {"baselines": baselines(case), "seeds": {}}
        for seed in args.seeds:
            twin_dir = args.twins / f"{name}-seed{seed}"
            if not (twin_dir / "twin.json").exists():
                print(f"# {name} seed {seed}: no saved twin in {twin_dir}, skipped", flush=True)
                continue
            out = run(case, twin_dir, seed, refit, args.groups, args.holdout)
            results["cases"][name]["seeds"][str(seed)] = out
            args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False))
            print(f"# {name} seed {seed}: " + json.dumps(out, default=str), flush=True)
    print("\n| case | quantity | scheme | median | worst | seeds |\n|---|---|---|---|---|---|")
    for name, res in results["cases"].items():
        by_seed = res["seeds"]
        if not by_seed:
            continue
        first = next(iter(by_seed.values()))["scores"]
        for q in next(iter(first.values())):
            for s in first:
                values = [by_seed[k]["scores"][s][q] for k in by_seed]
                print(
                    f"| {name} | {q} | {s} | {statistics.median(values):.3g} | "
                    f"{max(values):.3g} | {len(values)} |"
                )
        picks = [v["chosen_of_pair"] for v in by_seed.values()]
        print(f"# {name}: chosen of pair by seed: {picks}")


if __name__ == "__main__":
    main()
