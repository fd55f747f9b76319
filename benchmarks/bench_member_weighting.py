"""How the twin's networks are combined: measured on the very twins the fidelity run fitted.

``bench_fidelity.py --save-twins DIR`` keeps every fitted twin. This script loads them and scores
the same derived quantities (same cases, same truth) for several ways of combining a twin's
networks, none of which looks at the truth:

- ``equal``: the mean of all networks (what ``DigitalTwin.predict`` gives by default);
- ``reference`` / ``trials``: the reference configuration's networks alone, the search's alone;
- ``reference + n of trials``: the reference's networks and the first ``n`` of the search's;
- ``median``: the median over networks instead of the mean;
- ``spread-weighted``: each group of networks (one configuration) weighted by the inverse of
  its own spread (members' variance) over a grid of the whole data box, which lies mostly
  between the measured lines: a group whose networks disagree where no data are is trusted less.

Because the networks are the same, the comparison has no seed luck of its own: only the way
of combining changes.

    python benchmarks/bench_member_weighting.py benchmarks/_work/twins
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from bench_fidelity import build_cases

from bluesky_digitwin import DigitalTwin
from bluesky_digitwin.data import make_grid


def box_spread_by_group(twin: DigitalTwin, groups: list[str], n: int = 48) -> dict[str, float]:
    """Mean variance of each group's networks over an ``n`` x ``n`` grid of the data box."""
    axes = {f: np.linspace(lo, hi, n) for f, (lo, hi) in twin.ranges.items()}
    outputs = twin.predict_members(make_grid(**axes), warn=False).values
    outputs = outputs.reshape(len(groups), -1)
    return {
        g: float(np.mean(np.var(outputs[[i for i, h in enumerate(groups) if h == g]], axis=0)))
        for g in set(groups)
    }


def weights_by_spread(groups: list[str], spread: dict[str, float]) -> np.ndarray:
    """Per network: its group's inverse spread, shared equally by the group's networks."""
    inverse = {g: 1.0 / max(s, 1e-30) for g, s in spread.items()}
    sizes = {g: groups.count(g) for g in set(groups)}
    w = np.array([inverse[g] / sizes[g] for g in groups])
    return w / w.sum()


class Combined:
    """A Predictor whose prediction is a chosen combination of a twin's networks."""

    def __init__(self, twin: DigitalTwin, combine: Callable[[np.ndarray], np.ndarray]):
        self.twin, self.combine = twin, combine

    def predict(self, points: Any, *, warn: bool = True) -> xr.Dataset:
        members = self.twin.predict_members(points, warn=False)
        mean = members.isel(member=0).copy(data=self.combine(members.values))
        return xr.Dataset({self.twin.target: mean})


def schemes(twin: DigitalTwin) -> dict[str, Combined]:
    groups = ["reference" if m.get("trial") is None else "trials" for m in twin.metadata["members"]]
    spread = box_spread_by_group(twin, groups)
    w = weights_by_spread(groups, spread)
    ref = np.array([g == "reference" for g in groups])

    def weighted(values: np.ndarray) -> np.ndarray:
        return np.tensordot(w, values, axes=1)

    out = {
        "equal": Combined(twin, lambda v: v.mean(axis=0)),
        "median": Combined(twin, lambda v: np.median(v, axis=0)),
        "spread-weighted": Combined(twin, weighted),
    }
    if ref.any() and (~ref).any():
        out["reference"] = Combined(twin, lambda v: v[ref].mean(axis=0))
        out["trials"] = Combined(twin, lambda v: v[~ref].mean(axis=0))
        trial_members = np.flatnonzero(~ref)
        for n in (1, 2):
            keep = ref.copy()
            keep[trial_members[:n]] = True
            out[f"reference + {n} of trials"] = Combined(
                twin, lambda v, keep=keep: v[keep].mean(axis=0)
            )
    return out


def group_coverage(twin: DigitalTwin, case: Any) -> dict[str, float]:
    """Share of the case's between-line truth within ±2σ of each group's own mean and spread."""
    members = twin.predict_members(case.between, warn=False).values
    ref = np.array([m.get("trial") is None for m in twin.metadata["members"]])
    out = {}
    for name, keep in (("equal", np.ones_like(ref)), ("reference", ref), ("trials", ~ref)):
        if keep.sum() < 2:
            continue
        mean, std = members[keep].mean(axis=0), members[keep].std(axis=0, ddof=1)
        out[name] = float(np.mean(np.abs(case.between_truth - mean) <= 2 * std))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("twins", type=Path, help="the --save-twins folder of bench_fidelity.py")
    parser.add_argument("--out", type=Path, default=None, help="JSON of every number")
    args = parser.parse_args()
    saved = sorted(p for p in args.twins.iterdir() if (p / "twin.json").exists())
    if not saved:
        sys.exit(f"no saved twin in {args.twins}; run bench_fidelity.py --save-twins first")
    names = sorted({p.name.rsplit("-seed", 1)[0] for p in saved})
    cases = {c.name: c for c in build_cases(names, fast=False)}
    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for path in saved:
        name, seed = path.name.rsplit("-seed", 1)
        if name not in cases:
            continue
        twin = DigitalTwin.load(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scored = {k: cases[name].score(p) for k, p in schemes(twin).items()}
            for k, share in group_coverage(twin, cases[name]).items():
                scored[k]["coverage"] = share
        results.setdefault(name, {})[seed] = scored
        print(f"# {name} seed {seed}: " + json.dumps(scored), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print("\n| case | quantity | scheme | median | worst | seeds |\n|---|---|---|---|---|---|")
    for name, by_seed in results.items():
        quantities = next(iter(by_seed.values()))["equal"].keys()
        scheme_names = next(iter(by_seed.values())).keys()
        for q in quantities:
            for s in scheme_names:
                values = [by_seed[k][s][q] for k in by_seed if s in by_seed[k]]
                print(
                    f"| {name} | {q} | {s} | {statistics.median(values):.3g} | "
                    f"{max(values):.3g} | {len(values)} |"
                )


if __name__ == "__main__":
    main()
