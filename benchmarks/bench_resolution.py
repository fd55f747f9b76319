"""Does the fit's data-resolution warning say where the derived quantity is wrong?

Every fit looks for a jump inside one step of a measured line
(:func:`bluesky_digitwin.resolution.find_unresolved_steps`) and warns where it is. This
benchmark checks that the warning is right on the fidelity benchmark's cases:

1. **Which cases are flagged**, from the data alone (no fit): the first-order magnets should
   be, the moving transition, the noisy superconductor and the ARPES-like map should not; the
   paper's own datasets (ErCo2, Fe3Ga4, the superconductor, the ARPES map, the fine-step
   ErCo2) are checked too when ``DIGITWIN_SHARED_DATA`` has them.
2. **Whether the flagged temperatures are where the error is**, on twins saved by
   ``bench_fidelity.py --save-twins DIR``: the *window* is the flagged steps' temperatures
   widened by ``--margin`` kelvin on each side; for each twin and quantity it reports the share
   of the temperatures inside the window, the share of the squared |ΔS_M| error made inside it
   (twin, linear and thin-plate RBF), and the twin's derived ±2σ coverage inside and outside.

    python benchmarks/bench_resolution.py                      # 1 only
    python benchmarks/bench_resolution.py --twins benchmarks/_work/res/twins
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from _common import SHARED_DATA
from bench_fidelity import Case, DerivedCurve, build_cases, quantity_cell

from bluesky_digitwin import DigitalTwin
from bluesky_digitwin.analysis import LinearInterpolator, RBFBaseline
from bluesky_digitwin.resolution import UnresolvedStep, find_unresolved_steps

CASES = ("erco2", "fo-sharp", "fo-soft-gap", "moving", "superconductor", "arpes-lines")
#: The paper's datasets: file, feature columns, target column.
PAPER_DATA = (
    ("traindata_Section3_1.csv", ("X1_demo1", "X2_demo1"), "Y_demo1", "ErCo2 coarse"),
    ("traindata_Section3_2.csv", ("X1_demo2", "X2_demo2"), "Y_demo2", "Fe3Ga4"),
    ("traindata_Section3_3.csv", ("X1_demo3", "X2_demo3"), "Y_demo3", "superconductor R(T, H)"),
    ("traindata_Section3_4.csv", ("X1_demo4", "X2_demo4"), "Y_demo4", "ARPES map (29 977 points)"),
    ("experimental/fine_step.csv", ("t", "h"), "m", "ErCo2 fine-step (26 fields)"),
)


def steps_of(case: Case) -> list[UnresolvedStep]:
    x = np.column_stack([case.data[f].values for f in case.features])
    return find_unresolved_steps(x, case.data[case.target].values, case.features)


def flagged_table(cases: list[Case]) -> str:
    lines = ["| data | lines flagged | where (largest share first) |", "|---|---|---|"]

    def row(name: str, steps: list[UnresolvedStep]) -> str:
        where = "; ".join(s.summary() for s in sorted(steps, key=lambda s: -s.share)[:3])
        more = f" (+{len(steps) - 3} more)" if len(steps) > 3 else ""
        return f"| {name} | {len(steps)} | {where or '-'}{more} |"

    for case in cases:
        lines.append(row(case.name, steps_of(case)))
    for file, features, target, name in PAPER_DATA:
        path = SHARED_DATA / file
        if path.is_file():
            table = pd.read_csv(path)
            x, y = table[list(features)].values, table[target].values
            found = find_unresolved_steps(x, y, features)
            lines.append(row(f"paper: {name}", found))
    return "\n".join(lines)


def window_mask(temperature: np.ndarray, steps: list[UnresolvedStep], margin: float) -> np.ndarray:
    inside = np.zeros(temperature.shape, dtype=bool)
    for s in steps:
        inside |= (temperature >= s.start - margin) & (temperature <= s.stop + margin)
    return inside


def error_share(curve: DerivedCurve, inside: np.ndarray) -> float:
    squared = (curve.predicted - curve.truth) ** 2
    return float(squared[inside].sum() / squared.sum())


def where_table(cases: list[Case], folder: Path, margin: float) -> str:
    lines = [
        "| twin | quantity | window (K) | share of T | share of squared error: twin | linear | "
        "TPS RBF | twin's derived coverage inside / outside |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for case in cases:
        steps = steps_of(case)
        if case.derived_curves is None or not steps:
            continue
        baselines = {
            "linear": case.derived_curves(
                LinearInterpolator.fit(case.data, case.features, case.target)
            ),
            "rbf": case.derived_curves(
                RBFBaseline.fit(case.data, case.features, case.target, tune=False)
            ),
        }
        lo = min(s.start for s in steps) - margin
        hi = max(s.stop for s in steps) + margin
        for saved in sorted(folder.glob(f"{case.name}-seed*")):
            curves = case.derived_curves(DigitalTwin.load(saved))
            for i, (label, curve) in enumerate(curves.items()):
                inside = window_mask(curve.temperature, steps, margin)
                covered = np.abs(curve.predicted - curve.truth) <= 2 * curve.spread
                twin_share = error_share(curve, inside)
                summary.setdefault((case.name, label), []).append(
                    (twin_share, float(covered[inside].mean()), float(covered[~inside].mean()))
                )
                lines.append(
                    f"| {saved.name if i == 0 else ''} | {quantity_cell(label)} | "
                    f"{f'{lo:.1f}–{hi:.1f}' if i == 0 else ''} | {inside.mean():.3f} | "
                    f"{twin_share:.2f} | {error_share(baselines['linear'][label], inside):.2f} | "
                    f"{error_share(baselines['rbf'][label], inside):.2f} | "
                    f"{covered[inside].mean():.2f} / {covered[~inside].mean():.2f} |"
                )
    lines += [
        "",
        "| case | quantity | twins | share of squared error inside, median (min) | "
        "derived coverage inside / outside, median |",
        "|---|---|---|---|---|",
    ]
    for (name, label), rows in summary.items():
        shares, inside_cov, outside_cov = zip(*rows, strict=True)
        lines.append(
            f"| {name} | {quantity_cell(label)} | {len(rows)} | {statistics.median(shares):.2f} "
            f"({min(shares):.2f}) | {statistics.median(inside_cov):.2f} / "
            f"{statistics.median(outside_cov):.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--twins", type=Path, help="twins saved by bench_fidelity --save-twins")
    parser.add_argument(
        "--margin", type=float, default=1.0, help="kelvin added to each side of a flagged step"
    )
    args = parser.parse_args(argv)
    cases = build_cases(args.cases, fast=False)
    print("## Which data are flagged (from the data alone)\n")
    print(flagged_table(cases))
    if args.twins is not None:
        if not args.twins.is_dir():
            sys.exit(f"--twins {args.twins}: no such directory")
        print(f"\n## Where the error is, against the flagged steps ± {args.margin:g} K\n")
        print(where_table(cases, args.twins, args.margin))
    return 0


if __name__ == "__main__":
    sys.exit(main())
