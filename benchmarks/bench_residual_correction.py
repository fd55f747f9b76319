"""Twin plus interpolated residuals: does correcting it on the measured lines help between them?

The twin predicts the held-out points on the measured lines worse than linear interpolation
along them (every ErCo2 fit warns so), while its derived quantity between the lines is better.
Regression kriging joins the two: the twin is the trend, and an interpolator of the twin's
residuals at the measured points (linear, cubic spline or thin-plate RBF, the baselines'
classes) is added to it, so the sum reproduces the data on the lines and follows the twin
between them. This script scores that sum's derived quantity on twins that
``bench_fidelity.py --save-twins`` kept, against the twin alone, with no new training.

    python benchmarks/bench_residual_correction.py benchmarks/_work/twins-default \\
        --cases erco2 fo-soft-gap fo-sharp
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from bench_fidelity import Case, build_cases

from bluesky_digitwin import DigitalTwin
from bluesky_digitwin.analysis import LinearInterpolator, RBFBaseline, SplineInterpolator

CORRECTIONS = {
    "linear": lambda data, case: LinearInterpolator.fit(data, case.features, case.target),
    "cubic spline": lambda data, case: SplineInterpolator.fit(data, case.features, case.target),
    "thin-plate RBF": lambda data, case: RBFBaseline.fit(
        data, case.features, case.target, tune=False
    ),
}


class Corrected:
    """The twin plus an interpolation of its residuals at the case's measured points."""

    def __init__(self, twin: DigitalTwin, case: Case, correction: str):
        self.twin = twin
        self.target = case.target
        points = {f: case.data[f].values for f in case.features}
        fitted = twin.predict(points, warn=False)[case.target].values
        residuals = case.data.copy()
        residuals[case.target] = ("point", case.data[case.target].values - fitted)
        self.correction = CORRECTIONS[correction](residuals, case)

    def predict(self, points: Any, *, warn: bool = True) -> xr.Dataset:
        out = self.twin.predict(points, warn=False)
        # Outside the measured range the interpolators give NaN: no correction there.
        shift = np.nan_to_num(self.correction.predict(points, warn=False)[self.target].values)
        out[self.target] = out[self.target] + shift
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("twins", type=Path, help="a --save-twins folder of bench_fidelity.py")
    parser.add_argument("--cases", nargs="+", default=["erco2", "fo-soft-gap", "fo-sharp"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for case in build_cases(args.cases, fast=False):
        scores: dict[str, list[dict[str, float]]] = {"twin": []}
        scores.update({f"twin + {name} of residuals": [] for name in CORRECTIONS})
        for seed in args.seeds:
            folder = args.twins / f"{case.name}-seed{seed}"
            if not folder.is_dir():
                print(f"# {folder}: not there, skipped", flush=True)
                continue
            twin = DigitalTwin.load(folder)
            scores["twin"].append(case.score(twin))
            for name in CORRECTIONS:
                scores[f"twin + {name} of residuals"].append(
                    case.score(Corrected(twin, case, name))
                )
            print(f"# {case.name} seed {seed}: done", flush=True)
        print(f"\n{case.name} ({case.units}), median (worst) of {len(scores['twin'])} seeds")
        for method, rows in scores.items():
            if not rows:
                continue
            cells = [
                f"{statistics.median(r[q] for r in rows):.3g} ({max(r[q] for r in rows):.3g})"
                for q in rows[0]
            ]
            print(f"| {method} | " + " | ".join(cells) + " |  " + " / ".join(rows[0]))


if __name__ == "__main__":
    main()
