"""Case (c): the Tc(H) line of a superconductor from noisy R(T) sweeps on a ragged grid (§3.3).

Resistance sweeps of a simulated superconducting film are taken at nine fields, each only a few
kelvin around its transition, with noise: a ragged, noisy grid. A twin learns them and simulates
R(T) at a fine field step; the transition temperature Tc(H) (equivalently the upper critical
field Hc2(T)) is where R crosses half its normal-state value. It is compared with the film's
exact Tc(H), with the same rule applied to linear interpolation of the coarse sweeps, and with
the crossings of the measured sweeps themselves.

    python examples/c_superconductor.py [--fast] [--data [PATH]] [--out DIR]

With --data the paper's superconducting dataset (traindata_Section3_3.csv; T in K, H in Oe, a
resistance-like quantity without units) is used instead.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from _common import Summary, describe_scan, fit_twin, lines_figure, parse_args, read_case, rmse
from matplotlib.figure import Figure

from bluesky_digitwin import make_grid
from bluesky_digitwin.analysis import LinearInterpolator
from bluesky_digitwin.plot import plot_entropy_change, plot_map
from bluesky_digitwin.sim import SuperconductingFilm, coarse_resistance

NAME = "c_superconductor"
UNITS = {"T": "K", "H": "Oe", "R": ""}
LONG_NAMES = {"T": "temperature", "H": "magnetic field", "R": "resistance"}
#: Temperature step of the simulated sweeps, K.
FINE_T_STEP = 0.01
#: Fine field grid: this many fields over the learned range.
FINE_FIELDS, FAST_FINE_FIELDS = 121, 61
#: The normal state is the top of each sweep: its highest this-many kelvin.
NORMAL_STATE_K = 0.5


def normal_state(coarse: xr.Dataset) -> float:
    """R_n: the median over sweeps of the mean resistance in each sweep's top 0.5 K."""
    T, H, R = (coarse[n].values for n in ("T", "H", "R"))
    tops = [np.mean(R[(H == h) & (T >= T[H == h].max() - NORMAL_STATE_K)]) for h in np.unique(H)]
    return float(np.median(tops))


def crossing(T: np.ndarray, R: np.ndarray, level: float) -> float:
    """The temperature where R(T) last rises through ``level``, coming from the normal side.

    Walking down from the highest temperature, the first point below ``level`` ends the normal
    state; wiggles deeper in the superconducting state (noise, a rough twin) do not matter.
    """
    ok = np.isfinite(T) & np.isfinite(R)
    T, R = T[ok], R[ok]
    order = np.argsort(T)
    T, R = T[order], R[order]
    below = np.flatnonzero(R < level)
    if below.size == 0 or below[-1] == T.size - 1:
        return float("nan")  # never superconducting, or never normal, in this window
    i = below[-1]
    return float(T[i] + (level - R[i]) * (T[i + 1] - T[i]) / (R[i + 1] - R[i]))


def sweep_window(coarse: xr.Dataset, fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The T range measured around each field: the range both neighbouring sweeps cover.

    Outside it the twin would extrapolate into the corners a ragged scan never measured.
    """
    T, H = coarse["T"].values, coarse["H"].values
    lines = np.unique(H)
    lows = np.array([T[H == h].min() for h in lines])
    highs = np.array([T[H == h].max() for h in lines])
    j = np.clip(np.searchsorted(lines, fields, side="right") - 1, 0, len(lines) - 2)
    return np.maximum(lows[j], lows[j + 1]), np.minimum(highs[j], highs[j + 1])


def tc_line(prediction: xr.Dataset, low: np.ndarray, high: np.ndarray, level: float) -> np.ndarray:
    """Tc at every field of a prediction over (T, H), inside the measured window."""
    R = prediction["R"].transpose("H", "T").values
    T = prediction["T"].values
    return np.array(
        [
            crossing(np.where((T >= lo) & (T <= hi), T, np.nan), row, level)
            for row, lo, hi in zip(R, low, high, strict=True)
        ]
    )


def main() -> None:
    args = parse_args(NAME, __doc__)
    say = Summary(
        args.out,
        "case (c): Tc(H) of a superconductor, noisy and ragged (§3.3)",
        fast=args.fast,
        quiet=args.quiet,
    )
    film = None
    if args.data:
        coarse = read_case(
            args.data, "traindata_Section3_3.csv", ["T", "H", "R"], UNITS, LONG_NAMES
        )
        say(f"measured data: {coarse.attrs['source']} (material not named; R without units)")
    else:
        film = SuperconductingFilm()
        coarse = coarse_resistance(seed=args.seed)
        say(
            f"simulated material: {film.name} ({coarse.attrs['source']}), Tc(0) = {film.Tc0_K:g} K,"
            f" noise {film.noise_ohm:g} ohm"
        )
    say("coarse scan: " + describe_scan(coarse, "T", "H", "R"))
    sizes = [int((coarse["H"].values == h).sum()) for h in np.unique(coarse["H"].values)]
    say(f"ragged: {', '.join(map(str, sizes))} points per field")

    twin = fit_twin(coarse, ["T", "H"], "R", args, say)
    linear = LinearInterpolator.fit(coarse, ["T", "H"], "R")

    (t_lo, t_hi), (h_lo, h_hi) = twin.ranges["T"], twin.ranges["H"]
    temperatures = np.linspace(t_lo, t_hi, round((t_hi - t_lo) / FINE_T_STEP) + 1)
    coarse_fields = np.unique(coarse["H"].values)
    midpoints = 0.5 * (coarse_fields[1:] + coarse_fields[:-1])
    # The fine grid holds the measured fields and the midpoints, for the table below.
    n_fine = FAST_FINE_FIELDS if args.fast else FINE_FIELDS
    fields = np.unique(np.concatenate([np.linspace(h_lo, h_hi, n_fine), coarse_fields, midpoints]))
    grid = make_grid(T=temperatures, H=fields)
    low, high = sweep_window(coarse, fields)
    level = normal_state(coarse) / 2
    say(f"normal-state value {2 * level:.4g}; Tc where R crosses {level:.4g} (half of it)")

    tc_twin = tc_line(twin.predict(grid), low, high, level)
    tc_linear = tc_line(linear.predict(grid), low, high, level)
    T, H, R = (coarse[n].values for n in ("T", "H", "R"))
    tc_coarse = np.array([crossing(T[H == h], R[H == h], level) for h in coarse_fields])
    exact = film.critical_temperature(fields) if film is not None else np.full(fields.size, np.nan)

    say(
        f"Tc (K) at the measured fields (*) and half-way between; the twin on {fields.size} fields:"
    )
    true_column = f" {'true':>7}" if film is not None else ""
    say(f"{'μ0H (T)':>9} {'measured':>9} {'twin':>7} {'linear':>7}{true_column}")
    for h in np.sort(np.concatenate([coarse_fields, midpoints])):
        i = int(np.argmin(np.abs(fields - h)))
        j = np.flatnonzero(np.isclose(coarse_fields, h))
        measured = f"{tc_coarse[j[0]]:.3f}" if j.size else ""
        true_value = f" {exact[i]:>7.3f}" if film is not None else ""
        say(
            f"{h * 1e-4:>8.3g}{'*' if j.size else ' '} {measured:>9} {tc_twin[i]:>7.3f} "
            f"{tc_linear[i]:>7.3f}{true_value}".replace("nan", "  -")
        )
    if not (np.isfinite(tc_twin).all() and np.isfinite(tc_linear).all()):
        say("  (-: R does not cross half the normal-state value inside the measured window)")
    if film is not None:
        at_lines = film.critical_temperature(coarse_fields)
        off = ~np.isclose(fields[:, None], coarse_fields[None, :], atol=1.0).any(axis=1)

        def mk(a: np.ndarray, b: np.ndarray) -> str:
            return f"{rmse(a, b) * 1e3:.0f} mK"

        say(
            f"RMSE of Tc(H) against the film's exact Tc: twin {mk(tc_twin, exact)}, linear "
            f"interpolation {mk(tc_linear, exact)}; away from the measured fields: twin "
            f"{mk(tc_twin[off], exact[off])}, linear {mk(tc_linear[off], exact[off])}; the "
            f"measured sweeps' own crossings {mk(tc_coarse, at_lines)} (noise)"
        )
    else:
        say(
            f"no ground truth for measured data; twin and linear interpolation differ by "
            f"{rmse(tc_twin, tc_linear) * 1e3:.0f} mK RMS"
        )
    field_coord = {"H": ("H", fields, {"units": "Oe", "long_name": "magnetic field"})}

    def curve(values: np.ndarray, **attrs: str) -> xr.DataArray:
        return xr.DataArray(values, coords=field_coord, dims="H", name="Tc", attrs=attrs)

    tc_attrs = {"units": "K", "long_name": "transition temperature Tc"}
    twin_curve = curve(tc_twin, **tc_attrs, description="Tc(H): where R = R_n / 2")
    truth = curve(exact) if film is not None else None

    # Figures: sweeps (simulated only inside the measured window), maps with Tc(H), Tc(H).
    def inside(prediction: xr.Dataset) -> xr.Dataset:
        lo, hi = sweep_window(coarse, prediction["H"].values)
        keep = (prediction["T"] >= xr.DataArray(lo, dims="H")) & (
            prediction["T"] <= xr.DataArray(hi, dims="H")
        )
        return prediction.where(keep)

    say.save(
        lines_figure(coarse, twin, linear, fast="T", slow="H", sweep=temperatures, mask=inside),
        "lines",
    )
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2, sharex=True, sharey=True)
    plot_map(coarse, ax=left)
    plot_map(inside(twin.predict(grid)), ax=right)
    # Colours that stand out on viridis; the legend's grey frame shows the white line.
    right.plot(tc_twin, fields, color="tab:red", lw=2, label="Tc(H) from the twin")
    right.plot(tc_linear, fields, color="white", lw=1.2, ls="--", label="linear interpolation")
    right.plot(tc_coarse, coarse_fields, "o", color="tab:orange", mfc="none", label="measured")
    if truth is not None:
        right.plot(truth.values, fields, color="black", ls=":", lw=2, label="true Tc(H) (model)")
    right.legend(loc="upper right", fontsize="small", facecolor="0.75")
    right.set_ylabel("")
    say.save(fig, "maps")

    # Tc(H) itself and, when the truth is known, every estimate's deviation from it.
    measured_tc = xr.DataArray(tc_coarse, coords={"H": coarse_fields}, dims="H")
    fig = Figure(figsize=(9, 7.5 if truth is not None else 4.5), layout="constrained")
    axes = fig.subplots(2 if truth is not None else 1, 1, sharex=True, squeeze=False)[:, 0]
    compare = {"linear interpolation of the coarse data": curve(tc_linear)}
    plot_entropy_change(
        twin_curve,
        truth=truth,
        compare=compare,
        measured={"measured sweeps (noisy)": measured_tc},
        twin_id=twin.id,
        ax=axes[0],
    )
    if truth is not None:
        exact_at_lines = film.critical_temperature(coarse_fields)
        deviation = {"units": "K", "long_name": "Tc − true Tc"}
        plot_entropy_change(
            curve(tc_twin - exact, **deviation),
            compare={k: v - truth for k, v in compare.items()},
            measured={"measured sweeps (noisy)": measured_tc - exact_at_lines},
            twin_id=twin.id,
            ax=axes[1],
        )
        axes[1].axhline(0, color="black", lw=0.8, ls=":")
        axes[0].set_xlabel("")
    say.save(fig, "tc_line")
    say.write()


if __name__ == "__main__":
    main()
