"""Fidelity: the twin's derived quantities between coarse lines, over five seeds and six cases.

Each case is a coarse measurement like the paper's (a handful of lines, 100–300 points a line,
small noise) of one of the project's simulated materials (truth from the model on a fine grid),
or ErCo2 against its fine-step experiment. The twin is fitted with default settings once per
seed; linear, cubic-spline and thin-plate RBF interpolation of the same coarse points are the
baselines. For every case the *derived* quantity a user computes is compared with the truth:

- magnets: |ΔS_M| by the Maxwell relation at μ0H = 1, 2 and 5 T (ErCo2: 3 and 5 T), RMSE
  over temperature, from a prediction on a fine field grid (0.05 T steps);
- superconducting film: T_c(H) at R = R_n/2 at the fields between the measured ones, RMSE;
- ARPES-like map: the intensity on the map's lines left out of the coarse scan, RMSE
  (``arpes-lines``: 301 points a line; ``arpes-lines-full``, run only when named: the paper's
  967, 15 472 points, a large map's regime).

Reported per case and quantity: the twin's RMSE (median and worst of the seeds), the baselines'
RMSE, twin/linear and twin/best-baseline (median and worst), the seed spread (worst/best),
coverage (the share of between-line points whose true value lies within ±2σ of the twin), the
wall time of a fit, and the process's peak memory. Every number goes to a JSON file under
benchmarks/_work/ (``--table FILE`` prints the table again from it).

    python benchmarks/bench_fidelity.py                       # the benchmark: all cases, 5 seeds
    python benchmarks/bench_fidelity.py --fast                # end-to-end check, NOT the benchmark
    python benchmarks/bench_fidelity.py --cases fo-sharp --fit-options '{"ensemble_size": 15}'
    python benchmarks/bench_fidelity.py --table benchmarks/_work/fidelity-....json
    python benchmarks/bench_fidelity.py --cases moving --save-twins benchmarks/_work/twins

A lever is measured by rerunning with other ``--fit-options`` (JSON, passed to
:func:`fit_twin` and from there to ``DigitalTwin.fit``). The data of a case are the same for
every seed (fixed noise draw): the seeds vary the twin only, so the baselines are computed once.
Each fit also records the derived quantity of each group of its networks alone (the reference
configuration's, the best trial's), and ``--save-twins`` keeps the twins for
``bench_member_weighting.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import xarray as xr
from _common import (
    ERCO2_MASS_G,
    SHARED_DATA,
    erco2_coarse,
    erco2_fine,
    fit_options_from_json,
    machine,
    peak_memory_mib,
)

from bluesky_digitwin import DigitalTwin
from bluesky_digitwin.analysis import (
    LinearInterpolator,
    RBFBaseline,
    SplineInterpolator,
    entropy_change,
)
from bluesky_digitwin.data import make_grid
from bluesky_digitwin.sim import (
    ArpesMap,
    FirstOrderMagnet,
    MovingTransitionMagnet,
    SuperconductingFilm,
    arpes_scan,
    coarse_resistance,
    isofield_scans,
)

WORK = Path(__file__).resolve().parent / "_work"
OE_PER_T = 1e4
#: Noise draw of every simulated coarse scan (the seeds vary the twin, not the data).
DATA_SEED = 0
BASELINES = ("linear", "cubic spline", "thin-plate RBF")
#: Primary angles a line of the paper's ARPES map (967 x 31 = 29 977 points).
PAPER_PRIMARY_ANGLES = 967


class Predictor(Protocol):
    """The twin and the baselines alike."""

    def predict(self, points: Any, *, warn: bool = True) -> xr.Dataset: ...


# --------------------------------------------------------------------------------------------
# The twin: built here and only here, so that a lever is one more option
# --------------------------------------------------------------------------------------------


def fit_twin(
    data: Any,
    features: Sequence[str],
    target: str,
    *,
    seed: int,
    trials: int = 30,
    workers: int | None = None,
    **options: Any,
) -> DigitalTwin:
    """The twin of one case and seed: ``DigitalTwin.fit`` with ``options`` on top of defaults.

    ``options`` come from ``--fit-options`` (JSON), read by ``fit_options_from_json``: the
    settings objects may be given as JSON objects of their fields.
    """
    options = fit_options_from_json(options)
    return DigitalTwin.fit(
        data, list(features), target, n_trials=trials, n_workers=workers, seed=seed, **options
    )


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One coarse measurement, how its derived quantity is scored, and its between-line truth.

    Attributes
    ----------
    name, description
        Short key (``--cases``) and one line for the table's legend.
    data, features, target
        The coarse scan every model learns from.
    units
        Units of the derived quantity's RMSE.
    score
        A fitted model -> RMSE of the derived quantity against the truth, by quantity label.
    between, between_truth
        Points between the measured lines and the true (noiseless) target there: coverage.
    exact_fields
        Magnets: the derived quantity's RMSE when M is known exactly (no noise) at *every*
        field of the fine grid, but only at the measured temperatures, linearly interpolated
        between them. What the temperature step alone costs: a first-order jump falls between
        two measured temperatures and no model of these data can place it more sharply. Not a
        strict bound (a smooth model can beat linear interpolation along T), but a twin near it
        has little left to gain between the fields. The ARPES map's answers another question:
        the noiseless intensity on the measured lines, linearly interpolated to the unseen
        ones. Beside linear interpolation of the noisy scan it says how much of that error is
        noise and how much is the structure between the lines.
        Empty where it does not apply.
    derived_coverage
        The twin -> by quantity label, the share of the derived quantity's points whose true
        value lies within ±2σ of the networks' values, σ their spread: the derived quantity
        computed from each network alone (``DigitalTwin.predict_members``), which is the
        uncertainty a user of the derived quantity sees. None where it does not apply.
    derived_curves
        Magnets: a model -> by quantity label, the derived quantity along temperature
        (:class:`DerivedCurve`: predicted, true, and the networks' spread for a twin), for
        looking at *where* along temperature it is wrong (``bench_resolution.py``).
    notes
        Said in the output (e.g. a map smaller than the paper's).
    """

    name: str
    description: str
    data: xr.Dataset
    features: tuple[str, str]
    target: str
    units: str
    score: Callable[[Predictor], dict[str, float]]
    between: dict[str, np.ndarray]
    between_truth: np.ndarray
    exact_fields: dict[str, float] = field(default_factory=dict)
    derived_coverage: Callable[[DigitalTwin], dict[str, float]] | None = None
    derived_curves: Callable[[Predictor], dict[str, DerivedCurve]] | None = None
    notes: str = ""


@dataclass(frozen=True)
class DerivedCurve:
    """A derived quantity along temperature at one field: a model's, the truth, the spread.

    ``spread`` is the standard deviation of the quantity computed network by network (a twin
    only; None for a baseline).
    """

    temperature: np.ndarray
    predicted: np.ndarray
    truth: np.ndarray
    spread: np.ndarray | None = None


def derived_by_member(
    twin: DigitalTwin, grid: xr.Dataset, derive: Callable[[xr.DataArray], xr.DataArray]
) -> xr.DataArray:
    """The derived quantity computed from each of the twin's networks alone, along ``member``."""
    members = twin.predict_members(grid, warn=False)
    return xr.concat([derive(m) for m in members], dim="member")


def curves_by_field(
    model: Predictor,
    grid: xr.Dataset,
    derive: Callable[[xr.DataArray], xr.DataArray],
    truth: xr.DataArray,
    labels: dict[str, float],
) -> dict[str, DerivedCurve]:
    """The derived quantity (by field ``H``) of ``model`` and of each of its networks."""
    predicted = derive(model.predict(grid, warn=False)["M"])
    spread = None
    if isinstance(model, DigitalTwin):
        spread = derived_by_member(model, grid, derive).std("member", ddof=1)
    return {
        label: DerivedCurve(
            predicted.sel(H=h)["T"].values,
            predicted.sel(H=h).values,
            truth.sel(H=h).values,
            None if spread is None else spread.sel(H=h).values,
        )
        for label, h in labels.items()
    }


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def member_coverage(
    twin: DigitalTwin,
    grid: xr.Dataset,
    derive: Callable[[xr.DataArray], xr.DataArray],
    truth: xr.DataArray,
    labels: dict[str, float],
) -> dict[str, float]:
    """Coverage of a derived quantity (by field ``H``) by its spread over the twin's networks."""
    return spread_coverage(derived_by_member(twin, grid, derive), truth, labels)


def spread_coverage(
    each: xr.DataArray, truth: xr.DataArray, labels: dict[str, float]
) -> dict[str, float]:
    """Coverage of ``truth`` (by field ``H``) by the networks' values ``each`` (along
    ``member``): the share within ±2σ of their mean."""
    mean, std = each.mean("member"), each.std("member", ddof=1)
    return {
        label: float(
            np.mean(np.abs(truth.sel(H=h).values - mean.sel(H=h).values) <= 2 * std.sel(H=h).values)
        )
        for label, h in labels.items()
    }


def fine_fields_oe(lowest_oe: float, highest_t: float) -> np.ndarray:
    """The lowest measured field, then 0.05 T steps up to ``highest_t``, in Oe."""
    steps = np.round(np.arange(0.05, highest_t + 1e-9, 0.05), 6) * OE_PER_T
    return np.unique(np.concatenate([[lowest_oe], steps[steps > lowest_oe]]))


def magnet_case(
    name: str,
    description: str,
    material: FirstOrderMagnet | MovingTransitionMagnet,
    fields_oe: Sequence[float],
    temperatures: np.ndarray,
    fine_temperatures: np.ndarray,
    at_t: Sequence[float] = (1.0, 2.0, 5.0),
    noise_emu: float = 1e-6,
) -> Case:
    """|ΔS_M| at ``at_t`` (T) from a prediction on a fine (H, T) grid, against the model's."""
    data = isofield_scans(material, fields_oe, temperatures, noise=noise_emu, seed=DATA_SEED)
    fields = fine_fields_oe(min(fields_oe), max(fields_oe) / OE_PER_T)
    grid = make_grid(H=fields, T=fine_temperatures)
    hh, tt = np.meshgrid(fields, fine_temperatures, indexing="ij")
    true_m = xr.DataArray(
        material.moment(tt, hh), dims=("H", "T"), coords={"H": fields, "T": fine_temperatures}
    )
    units = {"magnetization_units": "emu", "field_units": "Oe", "mass": material.mass_g}

    def dsm(m: xr.DataArray) -> xr.DataArray:
        return entropy_change(m.transpose("H", "T"), absolute=True, **units)

    truth = dsm(true_m)

    def score_moment(m: xr.DataArray) -> dict[str, float]:
        predicted = dsm(m)
        return {
            f"|ΔS_M| {b:g} T": rmse(predicted.sel(H=b).values, truth.sel(H=b).values) for b in at_t
        }

    def score(model: Predictor) -> dict[str, float]:
        return score_moment(model.predict(grid, warn=False)["M"])

    def derived_coverage(twin: DigitalTwin) -> dict[str, float]:
        return member_coverage(twin, grid, dsm, truth, {f"|ΔS_M| {b:g} T": b for b in at_t})

    def derived_curves(model: Predictor) -> dict[str, DerivedCurve]:
        return curves_by_field(model, grid, dsm, truth, {f"|ΔS_M| {b:g} T": b for b in at_t})

    # The exact moment at every fine field, seen only at the measured temperatures.
    on_measured_t = material.moment(*np.meshgrid(temperatures, fields, indexing="xy"))
    along_t = np.stack([np.interp(fine_temperatures, temperatures, row) for row in on_measured_t])

    off_line = ~np.isin(fields, np.asarray(fields_oe))
    between = {"H": hh[off_line].ravel(), "T": tt[off_line].ravel()}
    return Case(
        name,
        description,
        data,
        ("T", "H"),
        "M",
        "J/(kg K)",
        score,
        between,
        material.moment(between["T"], between["H"]),
        exact_fields=score_moment(true_m.copy(data=along_t)),
        derived_coverage=derived_coverage,
        derived_curves=derived_curves,
    )


def superconductor_case() -> Case:
    """The paper's noisy R(T, H) (9 ragged sweeps); T_c(H) at R_n/2 between the sweeps."""
    film = SuperconductingFilm()
    data = coarse_resistance(seed=DATA_SEED, material=film)
    measured = np.unique(data["H"].values)
    sweeps = {
        h: (
            data["T"].values[data["H"].values == h].min(),
            data["T"].values[data["H"].values == h].max(),
        )
        for h in measured
    }
    fields = fine_fields_oe(0.0, measured.max() / OE_PER_T)
    fields = fields[~np.isin(fields, measured)]
    step = 0.01
    blocks = []
    for h in fields:
        # Where the data say to look: the overlap of the two neighbouring sweeps (each spans
        # T_c ± 2 K of its own field, so the overlap holds T_c of every field between them).
        lo_h, hi_h = measured[measured < h].max(), measured[measured > h].min()
        lo = max(sweeps[lo_h][0], sweeps[hi_h][0])
        hi = min(sweeps[lo_h][1], sweeps[hi_h][1])
        blocks.append(np.arange(lo, hi + 1e-9, step))
    T = np.concatenate(blocks)
    H = np.concatenate([np.full(b.size, h) for h, b in zip(fields, blocks, strict=True)])
    starts = np.cumsum([0, *[b.size for b in blocks]])
    half = film.R_normal_ohm / 2

    def tc_line(r: np.ndarray) -> np.ndarray:
        # T_c at R_n/2 as (window start) + (grid steps below R_n/2): the crossing for a
        # monotonic curve, and a noisy one's level set without picking one of its crossings.
        return np.array(
            [
                T[starts[i]] + step * (np.sum(r[starts[i] : starts[i + 1]] < half) - 0.5)
                for i in range(len(fields))
            ]
        )

    truth_r = film.resistance(T, H)
    truth = tc_line(truth_r)

    def score(model: Predictor) -> dict[str, float]:
        r = model.predict({"T": T, "H": H}, warn=False)["R"].values
        return {"T_c(H) at R_n/2": rmse(tc_line(r), truth)}

    return Case(
        "superconductor",
        f"noisy R(T, H) of a film (σ = {film.noise_ohm:g} Ω, R_n = {film.R_normal_ohm:g} Ω), "
        f"{len(measured)} ragged sweeps 0–3 T, {data.sizes['point']} points; T_c(H) at R_n/2 "
        f"on {len(fields)} fields between them (0.05 T grid)",
        data,
        ("T", "H"),
        "R",
        "K",
        score,
        {"T": T, "H": H},
        truth_r,
    )


def arpes_case(n_primary: int, name: str = "arpes-lines") -> Case:
    """The ARPES map with every other secondary line left out; those lines are predicted."""
    arpes = ArpesMap()
    (t0, t1), (p0, p1) = arpes.theta_range_deg, arpes.phi_range_deg
    theta = np.linspace(t0, t1, n_primary)
    lines = np.linspace(p0, p1, 31)  # the paper's 31 secondary angles, 1 deg apart
    measured, unseen = lines[::2], lines[1::2]
    data = arpes_scan(arpes, theta, measured, seed=DATA_SEED)
    tt, pp = np.meshgrid(theta, unseen)
    between = {"theta": tt.ravel(), "phi": pp.ravel()}
    truth = arpes.intensity(between["theta"], between["phi"])

    def score(model: Predictor) -> dict[str, float]:
        return {"I on unseen lines": rmse(model.predict(between, warn=False)["I"].values, truth)}

    # The map's "exact fields" reference: the noiseless intensity on the measured lines, each
    # unseen line the mean of its two neighbours (linear interpolation of perfect data).
    on_lines = arpes.intensity(*(a.ravel() for a in np.meshgrid(theta, measured)))
    on_lines = on_lines.reshape(len(measured), len(theta))
    exact_lines = 0.5 * (on_lines[:-1] + on_lines[1:])

    return Case(
        name,
        f"ARPES-like map (Poisson counts), {len(measured)} of its 31 secondary lines (2° apart) "
        f"x {n_primary} primary angles = {data.sizes['point']} points; the {len(unseen)} lines "
        "left out predicted",
        data,
        ("theta", "phi"),
        "I",
        "counts",
        score,
        between,
        truth,
        exact_fields={"I on unseen lines": rmse(exact_lines.ravel(), truth)},
        notes=(
            ""
            if n_primary == PAPER_PRIMARY_ANGLES
            else f"ARPES: {n_primary} primary angles a line, not the paper's "
            f"{PAPER_PRIMARY_ANGLES} (time for 5 seeds)"
        ),
    )


def calibration_ratio(coarse: pd.DataFrame, fine: pd.DataFrame) -> float:
    """The median ratio of the coarse run's moment to the fine-step run's, at the fields both
    measured (the coarse run interpolated to the fine run's temperatures).

    For ErCo2 it is 1.048, within 0.001 at every temperature of every shared field of 1 T
    and more (1.04-1.06 at 0.01 T): a calibration or sample-mass difference between the two
    runs, not physics.
    """
    ratios = []
    for h in np.intersect1d(np.unique(coarse["H"]), np.unique(fine["H"])):
        line = coarse[coarse["H"] == h].sort_values("T")
        other = fine[fine["H"] == h].sort_values("T")
        inside = other["T"].between(line["T"].min(), line["T"].max())
        measured = other["M"].to_numpy()[inside]
        interpolated = np.interp(other["T"].to_numpy()[inside], line["T"], line["M"])
        ratios.append(interpolated / measured)
    return float(np.median(np.concatenate(ratios)))


def erco2_case() -> Case | None:
    """ErCo2: coarse 8 fields, |ΔS_M| at 3 and 5 T against the fine-step experiment."""
    if not (SHARED_DATA / "experimental" / "fine_step.csv").is_file():
        return None
    coarse, fine = erco2_coarse(), erco2_fine()
    temperatures = np.unique(fine["T"].to_numpy())
    fields = np.unique(fine["H"].to_numpy())
    grid = make_grid(H=fields, T=temperatures)
    units = {"magnetization_units": "emu", "field_units": "Oe", "mass": ERCO2_MASS_G}

    def dsm(m: xr.DataArray) -> xr.DataArray:
        return entropy_change(m.transpose("H", "T"), absolute=True, **units)

    reference = dsm(fine.set_index(["H", "T"]).to_xarray()["M"])
    # The two runs differ by a constant factor: every model of the coarse run carries it into
    # |ΔS_M| (which is linear in M). The rows "on the coarse run's scale" score against the
    # fine-step |ΔS_M| times that factor, to say how much of an error is the factor. Context,
    # not the target: the rows are the first two, unchanged.
    scale = calibration_ratio(coarse, fine)
    by_field = {f"|ΔS_M| {b:g} T": b for b in (3.0, 5.0)}
    rescaled = {f"{label}, fine step x {scale:.3f}": b for label, b in by_field.items()}

    def score(model: Predictor) -> dict[str, float]:
        predicted = dsm(model.predict(grid, warn=False)["M"])

        def against(truth: xr.DataArray, labels: dict[str, float]) -> dict[str, float]:
            return {
                q: rmse(predicted.sel(H=b).values, truth.sel(H=b).values) for q, b in labels.items()
            }

        return against(reference, by_field) | against(scale * reference, rescaled)

    def derived_coverage(twin: DigitalTwin) -> dict[str, float]:
        each = derived_by_member(twin, grid, dsm)  # the networks' |ΔS_M|, once for both
        return spread_coverage(each, reference, by_field) | spread_coverage(
            each, scale * reference, rescaled
        )

    def derived_curves(model: Predictor) -> dict[str, DerivedCurve]:
        return curves_by_field(model, grid, dsm, reference, by_field)

    off_line = ~np.isin(fine["H"].to_numpy(), np.unique(coarse["H"].to_numpy()))
    data = xr.Dataset(
        {
            k: ("point", coarse[k].to_numpy(), {"units": u})
            for k, u in zip("THM", ("K", "Oe", "emu"), strict=True)
        }
    )
    return Case(
        "erco2",
        "ErCo2 coarse set (8 fields, 808 points); |ΔS_M| against the fine-step experiment "
        f"({fields.size} fields); coverage against the fine-step M at its "
        f"{np.unique(fine['H'].to_numpy()[off_line]).size} fields not in the coarse set (a later "
        "measurement of a degraded sample: not a noiseless truth)",
        data,
        ("T", "H"),
        "M",
        "J/(kg K)",
        score,
        {"T": fine["T"].to_numpy()[off_line], "H": fine["H"].to_numpy()[off_line]},
        fine["M"].to_numpy()[off_line],
        derived_coverage=derived_coverage,
        derived_curves=derived_curves,
    )


def build_cases(names: Sequence[str], fast: bool) -> list[Case]:
    erco2_fields = (100.0, 1e3, 5e3, 1e4, 2e4, 3e4, 4e4, 5e4)
    builders: dict[str, Callable[[], Case | None]] = {
        "erco2": erco2_case,
        "fo-sharp": lambda: magnet_case(
            "fo-sharp",
            "first-order magnet, sharp (FirstOrderMagnet defaults, η = 2.5, T_C 34.7 K), "
            "ErCo2's 8 fields 0.01–5 T x 101 temperatures 10–60 K = 808 points, σ = 1 µemu",
            FirstOrderMagnet(),
            erco2_fields,
            np.linspace(10.0, 60.0, 101),
            np.linspace(10.0, 60.0, 501),
        ),
        "fo-soft-gap": lambda: magnet_case(
            "fo-soft-gap",
            "first-order magnet, soft (η = 1.3, T_C 31.3 K), uneven fields 0.01, 0.25, 0.5, 1, "
            "1.5, 3, 5 T (gaps of 1.5 and 2 T) x 151 temperatures 10–60 K = 1057 points, "
            "σ = 1 µemu",
            FirstOrderMagnet(eta=1.3, name="soft first-order magnet"),
            (100.0, 2500.0, 5e3, 1e4, 1.5e4, 3e4, 5e4),
            np.linspace(10.0, 60.0, 151),
            np.linspace(10.0, 60.0, 501),
        ),
        "moving": lambda: magnet_case(
            "moving",
            "moving-transition magnet (Fe3Ga4-like, T_t = 68 K + 30 K/T), fields 0.01, 0.5, 1, "
            "1.5, 2, 3, 4, 5 T x 161 temperatures 40–250 K = 1288 points, σ = 1 µemu",
            MovingTransitionMagnet(),
            (100.0, 5e3, 1e4, 1.5e4, 2e4, 3e4, 4e4, 5e4),
            np.linspace(40.0, 250.0, 161),
            np.linspace(40.0, 250.0, 841),
        ),
        "superconductor": superconductor_case,
        "arpes-lines": lambda: arpes_case(121 if fast else 301),
        # The paper's resolution along a line: more points than TrainConfig.reference_points,
        # where epochs are counted in passes over that many points (a large map's regime).
        "arpes-lines-full": lambda: arpes_case(
            121 if fast else PAPER_PRIMARY_ANGLES, "arpes-lines-full"
        ),
    }
    unknown = [n for n in names if n not in builders]
    if unknown:
        sys.exit(f"unknown case(s) {unknown}; choose from {', '.join(builders)}")
    cases = []
    for name in names:
        case = builders[name]()
        if case is None:
            print(f"# {name}: skipped, the shared data are not in {SHARED_DATA}", flush=True)
        else:
            cases.append(case)
    return cases


# --------------------------------------------------------------------------------------------
# Running and tabling
# --------------------------------------------------------------------------------------------


def baselines(case: Case) -> dict[str, dict[str, float]]:
    models = {
        "linear": LinearInterpolator.fit(case.data, case.features, case.target),
        "cubic spline": SplineInterpolator.fit(case.data, case.features, case.target),
        "thin-plate RBF": RBFBaseline.fit(case.data, case.features, case.target, tune=False),
    }
    return {name: case.score(model) for name, model in models.items()}


def coverage(twin: DigitalTwin, case: Case) -> float:
    predicted = twin.predict(case.between, warn=False)
    mean = predicted[case.target].values
    std = predicted[f"{case.target}_std"].values
    return float(np.mean(np.abs(case.between_truth - mean) <= 2 * std))


def save(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    os.replace(tmp, path)


def run_case(case: Case, args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    base = baselines(case)
    out: dict[str, Any] = {
        "description": case.description,
        "units": case.units,
        "n_points": int(case.data.sizes["point"]),
        "n_between": int(case.between_truth.size),
        "notes": case.notes,
        "baselines": base,
        "baseline_seconds": time.perf_counter() - start,
        "exact_fields": case.exact_fields,
        "seeds": {},
    }
    print(f"# {case.name}: baselines {base} ({out['baseline_seconds']:.1f} s)", flush=True)
    if case.exact_fields:
        print(
            f"# {case.name}: exact-data reference {case.exact_fields}",
            flush=True,
        )
    return out


def group_scores(twin: DigitalTwin, case: Case) -> dict[str, dict[str, float]]:
    """The derived quantity of each group of the twin's networks alone: the reference
    configuration's and each trial's (a look inside the ensemble, not a separate fit)."""
    groups: dict[str, list[int]] = {}
    for i, member in enumerate(twin.metadata["members"]):
        trial = member.get("trial")
        # Reference groups differ by activation alone (EnsembleRecipe(reference_activation=...)).
        name = f"reference {member['params'].get('activation', '')}".strip()
        groups.setdefault(name if trial is None else f"trial {trial}", []).append(i)
    if len(groups) < 2:
        return {}
    return {name: case.score(twin.select(indices)) for name, indices in groups.items()}


def run_seed(case: Case, seed: int, args: argparse.Namespace, options: dict[str, Any]) -> dict:
    start = time.perf_counter()
    twin = fit_twin(
        case.data,
        case.features,
        case.target,
        seed=seed,
        trials=args.trials,
        workers=args.workers,
        **options,
    )
    fit_seconds = time.perf_counter() - start
    if args.save_twins is not None:
        twin.save(args.save_twins / f"{case.name}-seed{seed}")
    search = twin.metadata.get("search", {})
    record = {
        "rmse": case.score(twin),
        "coverage": coverage(twin, case),
        "derived_coverage": case.derived_coverage(twin) if case.derived_coverage else {},
        "fit_seconds": fit_seconds,
        "n_complete": search.get("n_complete"),
        "n_pruned": search.get("n_pruned"),
        "ensemble_size": twin.ensemble_size,
        "validation_rmse": twin.validation_rmse,
        "peak_memory_mib": peak_memory_mib(),
        "group_rmse": group_scores(twin, case),
    }
    print(
        f"# {case.name} seed {seed}: {record['rmse']} coverage {record['coverage']:.3f}, "
        f"fit {fit_seconds:.1f} s; by group {record['group_rmse']}",
        flush=True,
    )
    return record


def fmt(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def quantity_cell(quantity: str, units: str | None = None) -> str:
    """A quantity's label for a Markdown table cell (its bars escaped), with units if given."""
    label = quantity if units is None else f"{quantity} [{units}]"
    return label.replace("|", "\\|")


def table(results: dict[str, Any]) -> str:
    """The Markdown table of a results dict (as saved in the JSON)."""
    meta = results["meta"]
    lines = []
    if meta.get("fast"):
        lines.append(
            "**FAST MODE: an end-to-end check, NOT the benchmark (few trials, one seed).**"
        )
        lines.append("")
    lines.append(
        "| case | quantity | twin median | twin worst | linear | spline | TPS RBF | "
        "exact-data reference | twin/linear median | worst | twin/best median | worst | "
        "spread | coverage median (min) | derived coverage median (min) | fit s median (max) "
        "| seeds |"
    )
    lines.append("|" + "---|" * 17)
    for name, case in results["cases"].items():
        seeds = case["seeds"]
        if not seeds:
            continue
        quantities = list(case["baselines"]["linear"])
        cov = [s["coverage"] for s in seeds.values()]
        secs = [s["fit_seconds"] for s in seeds.values()]
        for i, q in enumerate(quantities):
            twin = [s["rmse"][q] for s in seeds.values()]
            derived = [
                s["derived_coverage"][q]
                for s in seeds.values()
                if q in s.get("derived_coverage", {})
            ]
            b = {m: case["baselines"][m][q] for m in BASELINES}
            best = min(b.values())
            lin = b["linear"]
            first = i == 0
            lines.append(
                "| "
                + " | ".join(
                    [
                        name if first else "",
                        quantity_cell(q, case["units"]),
                        fmt(statistics.median(twin)),
                        fmt(max(twin)),
                        *(fmt(b[m]) for m in BASELINES),
                        fmt(case.get("exact_fields", {}).get(q, math.nan)),
                        fmt(statistics.median(twin) / lin),
                        fmt(max(twin) / lin),
                        fmt(statistics.median(twin) / best),
                        fmt(max(twin) / best),
                        fmt(max(twin) / min(twin)) if min(twin) > 0 else "n/a",
                        f"{statistics.median(cov):.3f} ({min(cov):.3f})" if first else "",
                        f"{statistics.median(derived):.3f} ({min(derived):.3f})"
                        if derived
                        else "n/a",
                        f"{statistics.median(secs):.0f} ({max(secs):.0f})" if first else "",
                        str(len(seeds)) if first else "",
                    ]
                )
                + " |"
            )
    memory = results.get("peak_memory_mib", {})
    lines.append("")
    lines.append(
        f"Peak memory (ru_maxrss): this process {memory.get('self', float('nan')):.0f} MiB, "
        f"its largest child {memory.get('children', float('nan')):.0f} MiB (a spawned worker "
        "counts the fork of this process before it starts). "
        f"{meta['trials']} trials, seeds {meta['seeds']}, fit options "
        f"{json.dumps(meta['fit_options']) if meta['fit_options'] else 'default'}; "
        f"{meta['machine']}, shared machine: wall times are context only."
    )
    for name, case in results["cases"].items():
        if case["seeds"]:
            lines.append(f"- **{name}**: {case['description']}.")
    missing = [n for n, c in results["cases"].items() if len(c["seeds"]) < len(meta["seeds"])]
    if missing:
        lines.append(
            "- Not complete (seeds run / asked): "
            + ", ".join(
                f"{n} {len(results['cases'][n]['seeds'])}/{len(meta['seeds'])}" for n in missing
            )
        )
    return "\n".join(lines)


def rescore(folders: Sequence[Path], names: Sequence[str]) -> str:
    """Score twins saved by ``--save-twins`` again (RMSE, coverage, derived coverage), no fit."""
    cases: dict[str, Case] = {}
    lines = [
        "| twin | quantity | RMSE | derived coverage | coverage (M between lines) |",
        "|---|---|---|---|---|",
    ]
    summary: dict[tuple[str, str], list[float]] = {}
    for folder in folders:
        for saved in sorted(p for p in folder.iterdir() if (p / "twin.json").is_file()):
            name = saved.name.rsplit("-seed", 1)[0]
            if name not in names:
                continue
            if name not in cases:
                cases[name] = build_cases([name], fast=False)[0]
            case = cases[name]
            twin = DigitalTwin.load(saved)
            scores = case.score(twin)
            derived = case.derived_coverage(twin) if case.derived_coverage else {}
            covered = coverage(twin, case)
            for i, (q, value) in enumerate(scores.items()):
                summary.setdefault((name, q), []).append(derived.get(q, math.nan))
                lines.append(
                    f"| {saved.name if i == 0 else ''} | {quantity_cell(q)} | {fmt(value)} | "
                    f"{fmt(derived.get(q))} | {f'{covered:.3f}' if i == 0 else ''} |"
                )
    lines += ["", "| case | quantity | derived coverage median (min) |", "|---|---|---|"]
    for (name, q), values in summary.items():
        lines.append(
            f"| {name} | {quantity_cell(q)} | {statistics.median(values):.3f} ({min(values):.3f}) |"
        )
    return "\n".join(lines)


def baselines_table(results: dict[str, Any]) -> str:
    """The baselines and the exact-fields reference of each case (``--baselines-only``)."""
    lines = [
        "| case | quantity | linear | spline | TPS RBF | exact-data reference |",
        "|" + "---|" * 6,
    ]
    for name, case in results["cases"].items():
        for i, q in enumerate(case["baselines"]["linear"]):
            row = [name if i == 0 else "", quantity_cell(q, case["units"])]
            row += [fmt(case["baselines"][m][q]) for m in BASELINES]
            row.append(fmt(case.get("exact_fields", {}).get(q)))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def merge(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Results of several runs with the same settings as one: cases run side by side, or the
    seeds of a case run in several processes (each seed's record is taken once)."""
    first = dict(parts[0]["meta"])
    for part in parts[1:]:
        meta = part["meta"]
        if (meta["trials"], meta["fit_options"], meta["fast"]) != (
            first["trials"],
            first["fit_options"],
            first["fast"],
        ):
            sys.exit(f"cannot table runs with different settings together: {first} and {meta}")
    cases: dict[str, Any] = {}
    for part in parts:
        for name, case in part["cases"].items():
            if name not in cases:
                cases[name] = {**case, "seeds": dict(case["seeds"])}
            else:
                cases[name]["seeds"].update(case["seeds"])
    first["seeds"] = sorted({int(s) for case in cases.values() for s in case["seeds"]})
    memory = {
        key: max(p.get("peak_memory_mib", {}).get(key, float("nan")) for p in parts)
        for key in ("self", "children")
    }
    return {"meta": first, "cases": cases, "peak_memory_mib": memory}


ALL_CASES = ("erco2", "fo-sharp", "fo-soft-gap", "moving", "superconductor", "arpes-lines")
#: Cases run only when named (--cases): a large map's fit takes minutes a seed.
EXTRA_CASES = ("arpes-lines-full",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        default=list(ALL_CASES),
        help=f"cases to run (default: {', '.join(ALL_CASES)}; also {', '.join(EXTRA_CASES)})",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=None, help="trials a fit (default 30)")
    parser.add_argument("--workers", type=int, default=None, help="search workers a fit")
    parser.add_argument(
        "--fit-options",
        default="{}",
        help="JSON of DigitalTwin.fit options, e.g. "
        '\'{"ensemble_size": 15, "train_config": {"patience": 50}}\'',
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="4 trials, seed 0, a smaller ARPES map: checks the script, is NOT the benchmark",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: _work/)")
    parser.add_argument(
        "--table", type=Path, nargs="+", default=None, help="print the table of JSON file(s)"
    )
    parser.add_argument(
        "--rescore",
        type=Path,
        nargs="+",
        default=None,
        metavar="DIR",
        help="score the twins saved in DIR by --save-twins again (of --cases), fitting none",
    )
    parser.add_argument(
        "--baselines-only",
        action="store_true",
        help="fit no twin: the baselines and the exact-fields reference of each case",
    )
    parser.add_argument(
        "--save-twins",
        type=Path,
        default=None,
        help="also save each fitted twin in DIR/CASE-seedN (to look inside ensembles later)",
    )
    args = parser.parse_args()

    if args.table is not None:
        print(table(merge([json.loads(p.read_text()) for p in args.table])))
        return
    if args.rescore is not None:
        print(rescore(args.rescore, args.cases))
        return
    try:
        options = json.loads(args.fit_options)
    except json.JSONDecodeError as err:
        sys.exit(f"--fit-options is not JSON ({err}); e.g. '{{\"ensemble_size\": 15}}'")
    if not isinstance(options, dict):
        sys.exit("--fit-options must be a JSON object, e.g. '{\"ensemble_size\": 15}'")
    if args.fast:
        args.trials = args.trials or 4
        args.seeds = args.seeds[:1]
    args.trials = args.trials or 30
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    path = args.out or WORK / f"fidelity-{stamp}{'-fast' if args.fast else ''}.json"

    if args.fast:
        print("# FAST MODE: an end-to-end check of the script, NOT the benchmark.", flush=True)
    cases = build_cases(args.cases, args.fast)
    results: dict[str, Any] = {
        "meta": {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "started_utc": stamp,
            "machine": machine(),
            "fast": args.fast,
            "trials": args.trials,
            "workers": args.workers,
            "seeds": [] if args.baselines_only else args.seeds,
            "fit_options": options,
            "data_seed": DATA_SEED,
        },
        "cases": {},
    }
    print(f"# results: {path}", flush=True)
    for case in cases:
        if case.notes:
            print(f"# {case.notes}", flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ragged edges, ranges: the same for every model
            results["cases"][case.name] = run_case(case, args, options)
        save(results, path)
        for seed in results["meta"]["seeds"]:
            record = run_seed(case, seed, args, options)
            results["cases"][case.name]["seeds"][str(seed)] = record
            results["peak_memory_mib"] = peak_memory_mib()
            save(results, path)
    print(baselines_table(results) if args.baselines_only else table(results))
    print(f"\n# every number: {path}")


if __name__ == "__main__":
    main()
