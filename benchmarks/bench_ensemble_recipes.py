"""Ensemble recipes on ErCo2: one search per seed, then several ways to build the twin from it.

The lever of issue 11 measured without the luck of separate searches: for each seed one
30-trial search (default settings) runs, and every recipe builds its ensemble from that same
search and the same held-out split. |ΔS_M| RMSE against the fine-step experiment at 3 and 5 T,
as ``bench_accuracy_erco2.py`` computes it, beside linear, cubic-spline and thin-plate RBF
interpolation of the same coarse data.

Recipes (``EnsembleRecipe``):

- ``paper5``: the 5 best trials' own networks, refitted 30 epochs (the paper's; the old default);
- ``default12``: 6 new networks of the best trial's hyperparameters and 6 of the reference
  network (3 x 200, learning rate 1e-3), trained as two populations (the new default);
- ``reference8``: 8 reference networks only;
- ``top2_ref12``: 4 each of the 2 best trials' hyperparameters and of the reference.

    python benchmarks/bench_ensemble_recipes.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
from _common import erco2_coarse, erco2_fine, machine
from bench_accuracy_erco2 import FIELDS_T, dsm_at, rmse_by_field

from bluesky_digitwin import EnsembleRecipe, TrainConfig
from bluesky_digitwin.analysis import LinearInterpolator, RBFBaseline, SplineInterpolator
from bluesky_digitwin.data import make_grid, prepare_training_data
from bluesky_digitwin.surrogate.members import build_new_members, build_trial_members
from bluesky_digitwin.surrogate.search import run_search

RECIPES = {
    "paper5": EnsembleRecipe.paper(5),
    "default12": EnsembleRecipe(),
    "reference8": EnsembleRecipe(size=8, configurations=0),
    "top2_ref12": EnsembleRecipe(size=12, configurations=2),
}


def ensemble_dsm(models, grid, reference) -> dict[float, float]:
    """|ΔS_M| RMSE of the mean of ``models`` (raw T, H to raw M) on ``grid``."""
    h, t = np.meshgrid(grid["H"].values, grid["T"].values, indexing="ij")
    x = np.column_stack([t.ravel(), h.ravel()]).astype(np.float32)
    mean = np.mean([np.asarray(m(x)).ravel() for m in models], axis=0)
    m = xr.DataArray(
        mean.reshape(h.shape), dims=("H", "T"), coords={"H": grid["H"], "T": grid["T"]}
    )
    m.attrs["units"] = "emu"
    m["H"].attrs["units"], m["T"].attrs["units"] = "Oe", "K"
    return rmse_by_field(dsm_at(m), reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("_work/ensemble-recipes.json"))
    args = parser.parse_args()

    coarse, fine = erco2_coarse(), erco2_fine()
    grid = make_grid(H=np.unique(fine["H"]), T=np.unique(fine["T"]))
    reference = dsm_at(fine.set_index(["H", "T"]).to_xarray()["M"])
    data = prepare_training_data(coarse, ["T", "H"], "M")
    train_config = TrainConfig()

    results: dict[str, dict] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cls, kwargs in [
            ("linear", LinearInterpolator, {}),
            ("cubic spline", SplineInterpolator, {}),
            ("thin-plate RBF", RBFBaseline, {"tune": False}),
        ]:
            model = cls.fit(coarse, ["T", "H"], "M", **kwargs)
            results[name] = rmse_by_field(dsm_at(model.predict(grid)["M"]), reference)
    runs = []
    for seed in args.seeds:
        start = time.perf_counter()
        search = run_search(data, n_trials=args.trials, n_workers=args.workers, seed=seed)
        run = {"seed": seed, "search_s": time.perf_counter() - start}
        try:
            for name, recipe in RECIPES.items():
                start = time.perf_counter()
                # Exactly as DigitalTwin.fit builds its networks.
                if recipe.retrain:
                    models, _, _ = build_new_members(
                        search, search.best_trials, data, recipe, train_config, None, seed
                    )
                else:
                    chosen = search.best_trials[: recipe.size]
                    models, _, _ = build_trial_members(
                        search, chosen, data, recipe.member_training(train_config)
                    )
                run[name] = ensemble_dsm(models, grid, reference)
                run[f"{name}_s"] = time.perf_counter() - start
                print(seed, name, {k: round(v, 2) for k, v in run[name].items()}, flush=True)
        finally:
            search.cleanup()
        runs.append(run)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"baselines": results, "runs": runs}, indent=1))

    print(f"# ErCo2 |ΔS_M| RMSE, J/(kg K), one search per seed — {machine()}")
    best = {f: min(results[b][f] for b in results) for f in FIELDS_T}
    print(
        "| recipe | "
        + " | ".join(f"{f:g} T median | worst | /best baseline" for f in FIELDS_T)
        + " |"
    )
    print("|---" * (1 + 3 * len(FIELDS_T)) + "|")
    for name in RECIPES:
        cells = []
        for f in FIELDS_T:
            values = [r[name][f] for r in runs]
            cells += [f"{statistics.median(values):.2f}", f"{max(values):.2f}"]
            cells.append(f"{statistics.median(values) / best[f]:.2f} ({max(values) / best[f]:.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[f]:.2f} | | " for f in FIELDS_T) + " |")


if __name__ == "__main__":
    main()
