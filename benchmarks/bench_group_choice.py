"""Can a twin choose its own networks? Groups of several fits' twins, chosen without the truth.

The fidelity runs show that the best group of networks differs by material: on ErCo2 the ReLU
reference networks, on the simulated first-order magnets the searched SiLU shapes
(benchmarks/RESULTS.md). Mixing groups averages a good one with a bad one. This script asks
whether a signal the twin has without any truth picks the right group, before such a choice
is built into the product.

It loads the twins that ``bench_fidelity.py --save-twins`` kept for several recipes (one folder
each, same cases and seeds), pools the groups of each case and seed (each folder's reference
networks and its searched networks; a group present in two folders is taken from the first),
and for each group computes, with no truth:

- ``box``: the networks' variance over a grid of the whole data box (as
  ``bench_member_weighting.py``'s spread weighting);
- ``midline``: their variance on the lines midway between neighbouring measured lines;
- ``slope``: the variance of the fast-axis derivative on those midlines (what |ΔS_M| integrates);
- ``validation``: the group's pointwise validation RMSE on the held-out points (recorded at fit).

Each signal's rule is "the group with the lowest value"; the rule's twin is that group alone.
Its derived-quantity RMSE is scored against the truth (as the fidelity benchmark does) and
compared with every group alone, the best group (an oracle, for context) and every pool of two
or more groups (the mean of their networks).

    python benchmarks/bench_group_choice.py benchmarks/_work/twins-default:silu \\
        benchmarks/_work/twins-reluref:relu --out benchmarks/_work/group-choice.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from bench_fidelity import Case, build_cases

from bluesky_digitwin import DigitalTwin
from bluesky_digitwin.data import make_grid
from bluesky_digitwin.scan_lines import slow_axis_lines

SIGNALS = ("box", "midline", "slope", "validation")


class Predictions:
    """Every network's prediction of one twin, kept by the points asked: scoring every pool
    asks for the same grids again, and a twin's groups share its predictions."""

    def __init__(self, twin: DigitalTwin):
        self.twin = twin
        self._by_points: dict[int, tuple[Any, xr.DataArray]] = {}
        axes = {f: np.linspace(lo, hi, 48) for f, (lo, hi) in twin.ranges.items()}
        #: A grid of the whole data box, mostly between the measured lines.
        self.box = make_grid(**axes)

    def __call__(self, points: Any) -> xr.DataArray:
        # The points are kept with their prediction, so that their id stays theirs.
        if id(points) not in self._by_points:
            self._by_points[id(points)] = (points, self.twin.predict_members(points, warn=False))
        return self._by_points[id(points)][1]


@dataclass
class Group:
    """Some networks of one saved twin, and how to predict with them alone."""

    name: str
    predictions: Predictions
    members: np.ndarray  # indices into the twin's networks

    def outputs(self, points: Any) -> np.ndarray:
        return self.predictions(points).values[self.members]

    def validation(self) -> float:
        meta = self.predictions.twin.metadata["members"]
        return float(np.mean([meta[i]["validation_rmse"] for i in self.members]))


class Pooled:
    """A Predictor: the mean of the networks of one or more groups."""

    def __init__(self, groups: list[Group]):
        self.groups = groups

    def predict(self, points: Any, *, warn: bool = True) -> xr.Dataset:
        first = self.groups[0].predictions(points)
        values = np.concatenate([g.outputs(points) for g in self.groups]).mean(axis=0)
        return xr.Dataset({first.name: first.isel(member=0).copy(data=values)})


def groups_of(twin: DigitalTwin, tag: str) -> list[Group]:
    predictions = Predictions(twin)
    trials = np.array([m.get("trial") is not None for m in twin.metadata["members"]])
    out = []
    if (~trials).any():
        out.append(Group(f"{tag} reference", predictions, np.flatnonzero(~trials)))
    if trials.any():
        name = "searched" if tag == "silu" else f"searched ({tag})"
        out.append(Group(name, predictions, np.flatnonzero(trials)))
    return out


def midline_grid(case: Case, n_fast: int = 200) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
    """Points on the lines midway between neighbouring measured lines, and the grid's shape."""
    x = np.column_stack([case.data[f].values for f in case.features])
    labels, n_lines = slow_axis_lines(x)
    # The slow axis is the column that barely moves along a line.
    within = [
        max(np.ptp(x[labels == k, i]) for k in range(n_lines)) / np.ptp(x[:, i]) for i in (0, 1)
    ]
    slow = int(np.argmin(within))
    fast = 1 - slow
    centres = np.array([x[labels == k, slow].mean() for k in range(n_lines)])
    mids = (centres[:-1] + centres[1:]) / 2
    fast_axis = np.linspace(x[:, fast].min(), x[:, fast].max(), n_fast)
    ss, ff = np.meshgrid(mids, fast_axis, indexing="ij")
    points = {case.features[slow]: ss.ravel(), case.features[fast]: ff.ravel()}
    return points, ss.shape


def signals(group: Group, midlines: tuple[dict[str, np.ndarray], tuple[int, int]]) -> dict:
    """The group's truth-free signals; ``midlines`` is :func:`midline_grid`'s answer."""
    box = group.outputs(group.predictions.box).reshape(len(group.members), -1)
    points, shape = midlines
    mid = group.outputs(points).reshape(len(group.members), *shape)
    slope = np.gradient(mid, axis=2)
    return {
        "box": float(np.mean(np.var(box, axis=0))),
        "midline": float(np.mean(np.var(mid, axis=0))),
        "slope": float(np.mean(np.var(slope, axis=0))),
        "validation": group.validation(),
    }


@dataclass
class Folder:
    path: Path
    tag: str


def parse_folder(text: str) -> Folder:
    path, _, tag = text.partition(":")
    return Folder(Path(path), tag or Path(path).name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folders", nargs="+", type=parse_folder, help="--save-twins folders, each DIR[:TAG]"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON of every number")
    args = parser.parse_args()
    keys = None
    for folder in args.folders:
        found = {p.name for p in folder.path.iterdir() if (p / "twin.json").exists()}
        keys = found if keys is None else keys & found
    if not keys:
        sys.exit("no case and seed saved in every folder; run bench_fidelity.py --save-twins")
    names = sorted({k.rsplit("-seed", 1)[0] for k in keys})
    cases = {c.name: c for c in build_cases(names, fast=False)}
    results: dict[str, dict[str, Any]] = {}
    for key in sorted(keys):
        name, seed = key.rsplit("-seed", 1)
        if name not in cases:
            continue
        case = cases[name]
        pool: list[Group] = []
        for folder in args.folders:
            for group in groups_of(DigitalTwin.load(folder.path / key), folder.tag):
                if group.name not in {g.name for g in pool}:
                    pool.append(group)
        # The product's three-group candidate at today's ensemble size: 4 networks each.
        trio = [g for g in pool if g.name in ("searched", "silu reference", "relu reference")]
        four = [Group(g.name, g.predictions, g.members[:4]) for g in trio]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = {g.name: case.score(Pooled([g])) for g in pool}
            if len(trio) == 3:
                scores["12 networks: 4 searched + 4 silu + 4 relu reference"] = case.score(
                    Pooled(four)
                )
            for size in range(2, len(pool) + 1):
                for chosen in itertools.combinations(pool, size):
                    label = " + ".join(g.name for g in chosen)
                    scores[f"pool: {label}"] = case.score(Pooled(list(chosen)))
            midlines = midline_grid(case)
            found = {g.name: signals(g, midlines) for g in pool}
        record = {"scores": scores, "signals": found, "chosen": {}}
        for signal in SIGNALS:
            record["chosen"][signal] = min(found, key=lambda g, s=signal: found[g][s])
        results.setdefault(name, {})[seed] = record
        print(f"# {name} seed {seed}: {json.dumps(record)}", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print(table(results))


def table(results: dict[str, dict[str, Any]]) -> str:
    """Median (worst) of the seeds for every group alone, the pool, the oracle and each rule."""
    lines = ["| case | quantity | " + " | ".join(["row", "median (worst)", "seeds"]) + " |"]
    lines.append("|---|---|---|---|---|")
    for name, by_seed in results.items():
        seeds = list(by_seed.values())
        quantities = list(next(iter(seeds[0]["scores"].values())).keys())
        rows: dict[str, list[dict[str, float]]] = {}
        for record in seeds:
            for group, score in record["scores"].items():
                rows.setdefault(group, []).append(score)
            groups = list(record["signals"])
            rows.setdefault("oracle (best group per quantity)", []).append(
                {q: min(record["scores"][g][q] for g in groups) for q in quantities}
            )
            for signal, chosen in record["chosen"].items():
                rows.setdefault(f"lowest {signal}", []).append(record["scores"][chosen])
        for q in quantities:
            for row, scores in rows.items():
                values = [s[q] for s in scores]
                lines.append(
                    f"| {name} | {q} | {row} | {statistics.median(values):.3g} "
                    f"({max(values):.3g}) | {len(values)} |"
                )
        for signal in SIGNALS:
            picks = [r["chosen"][signal] for r in seeds]
            lines.append(
                f"| {name} | picks | lowest {signal} | "
                + ", ".join(f"{g}: {picks.count(g)}" for g in sorted(set(picks)))
                + f" | {len(picks)} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
