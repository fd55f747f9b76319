"""Case (d): an ARPES-like intensity map with many peaks over two angles (paper §3.4).

A simulated photoemission map (pockets and spots, Poisson counting noise, a detector whose
sensitivity falls towards the ends of the primary angle, a detection limit) is measured at 31
secondary angles 1° apart, 967 primary angles each: 29 977 points. A twin learns the map and
simulates it at a fine secondary-angle step; it is compared with the map's exact (noiseless)
intensity and with linear interpolation between the measured lines. Then the twin simulates
measurements at candidate secondary-angle steps and suggests the coarsest whose map, linearly
interpolated, still reproduces its fine map.

    python examples/d_arpes_map.py [--fast] [--data [PATH]] [--out DIR]

With --fast the map is subsampled (every 8th primary angle). With --data the paper's ARPES map
of a BiS2 compound (traindata_Section3_4.csv) is used instead.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from _common import Summary, describe_scan, fit_twin, parse_args, read_case, rmse, sweep_points
from matplotlib.figure import Figure

from bluesky_digitwin import make_grid
from bluesky_digitwin.analysis import LinearInterpolator, TimeModel, suggest_step
from bluesky_digitwin.plot import plot_lines, plot_map, plot_step_table
from bluesky_digitwin.sim import ArpesMap, coarse_arpes

NAME = "d_arpes_map"
UNITS = {"theta": "deg", "phi": "deg", "I": "counts"}
LONG_NAMES = {"theta": "primary angle", "phi": "secondary angle", "I": "intensity"}
#: With --fast, keep every this-many-th primary angle.
FAST_SUBSAMPLE = 8
#: Secondary-angle step of the fine simulation, deg.
FINE_PHI_STEP = 0.25
#: The time estimate assumes (no timing is published) about 30 s of counting per cut of 967
#: primary angles and 2 s to move the deflector to the next secondary angle.
ARPES_TIME = TimeModel(seconds_per_point=0.03, seconds_per_step_change=2.0, points_per_line=967)


def main() -> None:
    args = parse_args(NAME, __doc__)
    say = Summary(
        args.out,
        "case (d): an ARPES-like map over two angles (§3.4)",
        fast=args.fast,
        quiet=args.quiet,
    )
    arpes = None
    if args.data:
        units = {**UNITS, "I": "arb. units"}
        names = ["theta", "phi", "I"]
        coarse = read_case(args.data, "traindata_Section3_4.csv", names, units, LONG_NAMES)
        say(f"measured data: {coarse.attrs['source']} (BiS2 compound, Fermi-surface map)")
    else:
        arpes = ArpesMap()
        coarse = coarse_arpes(seed=args.seed)
        say(
            f"simulated material: {arpes.name} ({coarse.attrs['source']}), {arpes.n_pockets} "
            f"pockets and {arpes.n_spots} spots, Poisson noise"
        )
    if args.fast:
        # Every 8th primary angle of every line: an eighth of the points, for a quick fit.
        thetas = np.unique(coarse["theta"].values)[::FAST_SUBSAMPLE]
        coarse = coarse.isel(point=np.isin(coarse["theta"].values, thetas))
        say(f"--fast: every {FAST_SUBSAMPLE}th primary angle only")
    say("map: " + describe_scan(coarse, "theta", "phi", "I"))

    twin = fit_twin(coarse, ["theta", "phi"], "I", args, say)
    linear = LinearInterpolator.fit(coarse, ["theta", "phi"], "I", slow_axis="phi")

    # The fine map: the measured primary angles, secondary angles every 0.25 deg.
    (p_lo, p_hi) = twin.ranges["phi"]
    thetas = np.unique(coarse["theta"].values)
    phis = np.linspace(p_lo, p_hi, round((p_hi - p_lo) / FINE_PHI_STEP) + 1)
    grid = make_grid(theta=thetas, phi=phis)
    fine = twin.predict(grid)
    fine_linear = linear.predict(grid)
    lines = np.unique(coarse["phi"].values)
    off = ~np.isclose(phis[:, None], lines[None, :], atol=1e-6).any(axis=1)
    say(
        f"fine map: {thetas.size} primary x {phis.size} secondary angles "
        f"({FINE_PHI_STEP:g}° steps; {int(off.sum())} of them between the measured lines)"
    )
    truth = None
    if arpes is not None:
        theta_2d, phi_2d = np.meshgrid(thetas, phis, indexing="ij")
        truth = xr.DataArray(
            arpes.intensity(theta_2d, phi_2d),  # noiseless
            coords={"theta": fine["theta"], "phi": fine["phi"]},
            dims=("theta", "phi"),
            name="I",
            attrs={"units": "counts", "long_name": "intensity"},
        )
        between = {"phi": phis[off]}
        twin_error, linear_error = rmse(fine["I"], truth), rmse(fine_linear["I"], truth)
        twin_off = rmse(fine["I"].sel(between), truth.sel(between))
        linear_off = rmse(fine_linear["I"].sel(between), truth.sel(between))
        say(
            f"RMSE against the exact map (counts): twin {twin_error:.2f}, linear interpolation "
            f"{linear_error:.2f}; between the lines only: twin {twin_off:.2f}, linear "
            f"{linear_off:.2f} (the map's peak: {float(truth.max()):.0f})"
        )
    else:
        say(
            "no ground truth for measured data; twin and linear interpolation differ by "
            f"{rmse(fine['I'][:, off], fine_linear['I'][:, off]):.2f} arb. units RMS between "
            "the lines"
        )

    # Which secondary-angle step would do? The twin's map at candidate steps, interpolated.
    theta_sweep = np.linspace(*twin.ranges["theta"], 2 * sweep_points(args) - 1)
    say.status("simulating the map at each candidate secondary-angle step ...")
    suggestion = suggest_step(twin, "phi", quantity="map", over=theta_sweep, time_model=ARPES_TIME)
    say()
    say(str(suggestion))
    say()

    # Figures: the maps side by side, a few lines, and the step table.
    panels = 3 if truth is not None else 2
    fig = Figure(figsize=(5.2 * panels, 4.6), layout="constrained")
    axes = fig.subplots(1, panels, sharex=True, sharey=True)
    limits = {"vmin": 0.0, "vmax": float(np.nanmax(coarse["I"].values))}
    plot_map(coarse, ax=axes[0], **limits)
    plot_map(fine, ax=axes[1], **limits)
    if truth is not None:
        plot_map(truth, ax=axes[2], title="exact map of the model (noiseless)", **limits)
    for ax in axes[1:]:
        # The measured data names the axes; the simulated maps share them.
        ax.set_xlabel(axes[0].get_xlabel())
        ax.set_ylabel("")
    say.save(fig, "maps")

    # Two measured lines and the twin between them, against linear interpolation there.
    phi0 = lines[np.argmin(np.abs(lines))]
    pair = np.array([phi0, lines[np.searchsorted(lines, phi0) + 1]])
    measured = coarse.isel(point=np.isin(coarse["phi"].values, pair))
    middle = [pair.mean()]
    simulated = twin.predict(make_grid(theta=thetas, phi=[pair[0], *middle, pair[1]]))
    baseline = linear.predict(make_grid(theta=thetas, phi=middle))
    fig = plot_lines(measured, simulated, fast="theta", slow="phi", baseline=baseline)
    fig.set_size_inches(11, 4.6)
    fig.axes[0].set_title(
        f"lines at φ = {pair[0]:g}° and {pair[1]:g}° and half-way between ({middle[0]:g}°)"
    )
    say.save(fig, "lines")
    say.save(plot_step_table(suggestion, twin_id=twin.id), "step_table")
    say.write()


if __name__ == "__main__":
    main()
