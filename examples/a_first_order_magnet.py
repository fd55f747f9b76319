"""Case (a): the magnetic entropy change of a first-order magnet like ErCo2 (paper §3.1).

Coarse M(T) sweeps at eight fields (100 Oe to 5 T) are learned by a twin, which then simulates
the measurement at field steps of 0.05-1 T; from each, |ΔS_M|(T) for the whole field change
follows by the Maxwell relation, and the coarsest step at which it has converged is suggested
(the paper: 0.2 T). The simulated material knows its true |ΔS_M|, so the twin is compared with it
and with linear interpolation of the coarse data.

    python examples/a_first_order_magnet.py [--fast] [--data [PATH]] [--out DIR]

With --data the paper's ErCo2 measurement (traindata_Section3_1.csv, sample mass 0.61 mg) is
used instead, and its later fine-step measurement (experimental/fine_step.csv) when present.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from _common import (
    Summary,
    describe_scan,
    field_step_study,
    fit_twin,
    lines_figure,
    parse_args,
    read_case,
    rmse,
)

from bluesky_digitwin import make_grid
from bluesky_digitwin.analysis import (
    LinearInterpolator,
    entropy_change,
)
from bluesky_digitwin.plot import plot_entropy_change, plot_map, plot_step_table
from bluesky_digitwin.sim import FirstOrderMagnet, coarse_magnetization

NAME = "a_first_order_magnet"
#: Sample mass of the paper's ErCo2 (SOURCE.md), g.
ERCO2_MASS_G = 0.61e-3
UNITS = {"T": "K", "H": "Oe", "M": "emu"}
LONG_NAMES = {"T": "temperature", "H": "magnetic field", "M": "magnetic moment"}


def peak(curve: xr.DataArray) -> str:
    i = int(np.nanargmax(curve.values))
    return f"{float(curve.values[i]):.2f} at {float(curve['T'].values[i]):.1f} K"


def main() -> None:
    args = parse_args(NAME, __doc__)
    say = Summary(
        args.out,
        "case (a): |ΔS_M| of a first-order magnet (paper §3.1, ErCo2)",
        fast=args.fast,
        quiet=args.quiet,
    )
    magnet = None
    if args.data:
        coarse = read_case(
            args.data, "traindata_Section3_1.csv", ["T", "H", "M"], UNITS, LONG_NAMES
        )
        mass_g = ERCO2_MASS_G
        say(f"measured data: {coarse.attrs['source']} (ErCo2, sample mass {mass_g * 1e3:g} mg)")
    else:
        magnet = FirstOrderMagnet()
        coarse = coarse_magnetization(seed=args.seed)
        mass_g = magnet.mass_g
        say(f"simulated material: {magnet.name} ({coarse.attrs['source']}), noise 1e-6 emu")
    say("coarse scan: " + describe_scan(coarse, "T", "H", "M"))

    # No stated shape (monotonic=): on this magnet it made |ΔS_M| 1-2 % worse and the fit twice
    # as long, on ErCo2 better at 5 T and worse at 3 T (benchmarks/RESULTS.md). Example (b)
    # states it, where it helps.
    twin = fit_twin(coarse, ["T", "H"], "M", args, say)
    linear = LinearInterpolator.fit(coarse, ["T", "H"], "M")

    suggestion, temperatures, fine_fields, fine, linear_dsm = field_step_study(
        twin, coarse, linear, args, say, mass=mass_g, mass_units="g"
    )
    h_lo, h_hi = twin.ranges["H"]
    mce = {"mass": mass_g, "mass_units": "g", "absolute": True}
    field_change = (h_hi - h_lo) * 1e-4
    say(f"|ΔS_M| at μ0ΔH = {field_change:.2f} T, peak (J/(kg K)) at temperature:")
    say(f"  twin at {suggestion.reference_step:g} T steps:           {peak(fine)}")
    say(f"  linear interpolation, same steps: {peak(linear_dsm)}")
    truth = None
    measured = {}
    if magnet is not None:
        # The model knows its entropy: the exact change between the lowest and highest field.
        s_top = magnet.entropy(temperatures, h_hi)
        values = np.abs(s_top - magnet.entropy(temperatures, h_lo))
        truth = xr.DataArray(values, coords={"T": temperatures}, dims="T")
        say(f"  true value of the model:          {peak(truth)}")
        say(
            f"RMSE of |ΔS_M|(T) against the truth: twin {rmse(fine, truth):.2f}, linear "
            f"interpolation {rmse(linear_dsm, truth):.2f} J/(kg K)"
        )
    else:
        fine_file = (args.data if args.data.is_dir() else args.data.parent) / "experimental"
        fine_file = fine_file / "fine_step.csv"
        if fine_file.is_file():
            # The authors' later measurement at 0.2 T steps (the sample had degraded by then).
            measured_fine = read_case(fine_file, "", ["T", "H", "M"], UNITS, LONG_NAMES)
            dsm = entropy_change(measured_fine, **mce).isel(H=-1)
            measured["measured at 0.2 T steps (later, degraded sample)"] = dsm
            say(f"  measured at 0.2 T steps:          {peak(dsm)} (sample degraded since)")
        say(
            "no ground truth for measured data"
            + (": compare with the fine-step measurement" if measured else "")
        )

    # Figures: the data and the twin's lines, its map, |ΔS_M| per step, and the step table.
    lines = lines_figure(coarse, twin, linear, fast="T", slow="H", sweep=temperatures)
    say.save(lines, "lines")
    fine_map = twin.predict(make_grid(T=temperatures, H=fine_fields))
    say.save(plot_map(fine_map, measured=coarse), "map")
    compare = {"linear interpolation of the coarse data": linear_dsm}
    say.save(
        plot_entropy_change(
            suggestion, truth=truth, compare=compare, measured=measured, twin_id=twin.id
        ),
        "entropy_change",
    )
    say.save(plot_step_table(suggestion, twin_id=twin.id), "step_table")
    say.write()


if __name__ == "__main__":
    main()
