"""Accuracy on ErCo2: |ΔS_M| from the twin against the fine-step experiment, and baselines.

Train on the coarse set (8 fields), simulate the fine-step fields of
``experimental/fine_step.csv`` on its temperature grid, compute |ΔS_M| by the Maxwell relation
(mass 0.61 mg, integrated from the lowest field) and compare with the |ΔS_M| of the fine-step
measurement at μ0ΔH = 3 T and 5 T (RMSE over temperature). Linear, cubic-spline and thin-plate
RBF interpolation of the same coarse data are the baselines.

    python benchmarks/bench_accuracy_erco2.py [--trials 30] [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import optuna
import xarray as xr
from _common import ERCO2_MASS_G, erco2_coarse, erco2_fine, machine

from bluesky_digitwin import DigitalTwin, SearchStrategy, TrainConfig
from bluesky_digitwin.analysis import (
    LinearInterpolator,
    RBFBaseline,
    SplineInterpolator,
    entropy_change,
)
from bluesky_digitwin.data import make_grid

UNITS = {"magnetization_units": "emu", "field_units": "Oe", "mass": ERCO2_MASS_G}
FIELDS_T = (3.0, 5.0)


def dsm_at(grid_m: xr.DataArray) -> xr.DataArray:
    return entropy_change(grid_m, absolute=True, **UNITS)


def rmse_by_field(dsm: xr.DataArray, reference: xr.DataArray) -> dict[float, float]:
    out = {}
    for field in FIELDS_T:
        a = dsm.sel(H=field, method="nearest")
        b = reference.sel(H=field, method="nearest")
        assert abs(float(a.H) - field) < 1e-6 and abs(float(b.H) - field) < 1e-6
        out[field] = float(np.sqrt(np.mean((a.values - b.values) ** 2)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--min-resource", type=int, default=None, help="ASHA rung 0 (epochs)")
    parser.add_argument("--reduction-factor", type=int, default=None, help="ASHA factor")
    parser.add_argument("--patience", type=int, default=None, help="early stopping (epochs)")
    args = parser.parse_args()
    options = {}
    if args.min_resource or args.reduction_factor:
        options["strategy"] = SearchStrategy(
            pruner=optuna.pruners.SuccessiveHalvingPruner(
                min_resource=args.min_resource or 20, reduction_factor=args.reduction_factor or 3
            )
        )
    if args.patience:
        options["train_config"] = TrainConfig(patience=args.patience)

    coarse, fine = erco2_coarse(), erco2_fine()
    temperatures = np.unique(fine["T"].to_numpy())
    fields = np.unique(fine["H"].to_numpy())
    grid = make_grid(H=fields, T=temperatures)
    reference = dsm_at(fine.set_index(["H", "T"]).to_xarray()["M"])

    results = {}
    start = time.perf_counter()
    twin = DigitalTwin.fit(
        coarse,
        ["T", "H"],
        "M",
        n_trials=args.trials,
        n_workers=args.workers,
        seed=args.seed,
        **options,
    )
    fit_time = time.perf_counter() - start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fine grid's 2000 Oe fields lie inside; T edges too
        results["twin"] = rmse_by_field(dsm_at(twin.predict(grid)["M"]), reference)
        for name, cls, kwargs in [
            ("linear", LinearInterpolator, {}),
            ("cubic spline", SplineInterpolator, {}),
            ("thin-plate RBF", RBFBaseline, {"tune": False}),
            ("tuned RBF (Optuna, 5-fold)", RBFBaseline, {"seed": args.seed}),
        ]:
            model = cls.fit(coarse, ["T", "H"], "M", **kwargs)
            results[name] = rmse_by_field(dsm_at(model.predict(grid)["M"]), reference)

    print(f"# ErCo2 |ΔS_M| RMSE against the fine-step experiment, J/(kg K) — {machine()}")
    search = twin.metadata["search"]
    print(
        f"# twin: {args.trials} trials ({search['n_complete']} complete, {search['n_pruned']} "
        f"pruned), seed {args.seed}, options {options or 'default'}, fit {fit_time:.1f} s"
    )
    print("| method | RMSE at 3 T | RMSE at 5 T |")
    print("|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r[3.0]:.2f} | {r[5.0]:.2f} |")
    baselines = [v for k, v in results.items() if k in ("linear", "cubic spline", "thin-plate RBF")]
    for field in FIELDS_T:
        best = min(b[field] for b in baselines)
        print(
            f"twin / best of linear, spline, thin-plate RBF at {field:g} T: "
            f"{results['twin'][field] / best:.2f} (target <= 0.6)"
        )


if __name__ == "__main__":
    main()
