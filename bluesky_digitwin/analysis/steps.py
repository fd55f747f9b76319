"""Which step to measure at: simulate the measurement at candidate steps and pick the coarsest
that still gives the derived quantity.

The workflow of Terashima et al., Digital Discovery 2 (2023) 339 (doi:10.1039/D2DD00124A),
Fig. 1: measure coarse, learn a twin, simulate the measurement at several candidate steps of one
axis (e.g. the field H between M(T) sweeps), compute the quantity of interest from each, and pick
the coarsest step at which it has converged (ErCo2: 0.2 T; Fe3Ga4: 0.1 T). A time model turns
each step into the time the real measurement would take.

How a candidate is judged
-------------------------
For a stepped ``axis`` (a feature of the twin) the other features form the sweep (``over``, by
default a fine grid over their learned ranges). A candidate step ``s`` gives the lines
``lo, lo + s, lo + 2 s, ...`` from the bottom of the learned range ``lo``, plus the top ``hi``
when the steps do not land on it (the last step is then shorter): a real measurement covers the
whole range, and the magnetocaloric integral must end at the same top field for every step.
The twin simulates every line; the quantity computed from that simulation is compared with the
quantity at a ``reference_step`` finer than every candidate (default: a quarter of the finest).

- ``error``: RMSE of the candidate's quantity against the reference's, divided by the reference's
  largest absolute value (``relative=True``, the default), so ``tol`` is a fraction (0.02 = 2 %)
  and units and the sample mass cancel. ``max_error``: the largest absolute difference, scaled
  the same way.
- ``spread``: the standard deviation, over the twin's networks, of the error each network gives
  on its own (its candidate against its own reference). It says how far the error estimate
  depends on which good network is asked; NaN for a single network. The spread of the quantity
  itself at the reference step is :attr:`StepSuggestion.reference_spread`.
- The suggestion is the coarsest candidate whose error *and the errors of all finer candidates*
  are below ``tol``: the quantity has converged from there on. A coarse step that happens to
  score well (its lines happen to straddle a transition nicely) while a finer one does not, is
  not taken for convergence.

Quantities
----------
- ``"magnetocaloric"``: |ΔS_M|(T) at the top field, by the Maxwell relation
  (:func:`~bluesky_digitwin.analysis.magnetocaloric.entropy_change`, ``absolute=True``),
  integrated from the bottom of the learned field range (or up to ``field_change`` above it).
  The axis is the field, the one other feature the temperature. A moment (emu) needs the sample
  ``mass``; when the twin records no units for the target, a given mass means the target is a
  moment in emu. With relative errors the mass cancels, so for the suggestion any positive mass
  will do (only the absolute numbers of the curves need the right one).
- ``"map"``: the twin's map itself, e.g. ARPES intensity over two angles. The candidate's lines
  are interpolated linearly along the axis onto the reference lines and compared with the twin's
  fine map there: how well a measurement at that step, linearly interpolated, reproduces it.
- any callable ``quantity(ds) -> DataArray | ndarray | float`` on the simulated Dataset (the
  target over the dims ``(axis, *sweep)``, coordinates with units). A result that keeps the axis
  as a dimension is interpolated linearly onto the reference's coordinates before comparing.

The default tolerance
---------------------
2.5 % relative RMSE. It was set on the paper's data (twins of 30 trials, seed 0, 201-point T
sweeps, candidates 0.05-1 T). ErCo2 (coarse fields to 5 T): errors 0.3 % at 0.1 T, 1.4 % at
0.2 T, 2.7 % at 0.3 T, 5.9 % at 0.5 T, so 0.2 T is suggested (the paper: 0.2 T). Fe3Ga4 (to 2 T):
0.9 % at 0.05 T, 2.5 % at 0.1 T, 6.3 % at 0.15 T, so 0.1 T or 0.05 T (the paper: 0.1 T). Any
tolerance between about 1 % and 6 % keeps both within 0.1-0.3 T and 0.05-0.15 T; 2.5 % lies in
the middle of that window on a log scale, so that a differently trained twin (its member-to-member
spread of the errors is up to a third of them) still lands there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike

from bluesky_digitwin.data import DigitwinInputError
from bluesky_digitwin.json_values import jsonable
from bluesky_digitwin.protocols import Twin
from bluesky_digitwin.resolution import UnresolvedStep, unresolved_steps_note

# The suggestion's parts, each in its own module; importable from here as they always were.
from .step_grids import (
    DEFAULT_FIELD_CANDIDATES_T,
    axis_conversion,
    axis_grid,
    check_candidates,
    default_candidates,
    sweep_grid,
)
from .step_quantities import (
    QUANTITIES,
    Quantity,
    align_quantity,
    quantity_curves,
    quantity_errors,
    relative_scale,
    resolve_quantity,
    run_quantity,
    simulate_members,
)
from .time_model import TimeModel, format_duration

__all__ = [
    "DEFAULT_FIELD_CANDIDATES_T",
    "DEFAULT_SWEEP_POINTS",
    "DEFAULT_TOL",
    "QUANTITIES",
    "StepSuggestion",
    "TimeModel",
    "format_duration",
    "suggest_step",
]

#: Default tolerance: 2.5 % RMSE relative to the reference quantity's largest absolute value.
DEFAULT_TOL = 0.025
#: Points of the default sweep grid over each other feature's learned range.
DEFAULT_SWEEP_POINTS = 201
#: The default reference step is the finest candidate divided by this.
REFERENCE_DIVISOR = 4
#: More lines than this at the reference step means the steps are in the wrong units.
MAX_LINES = 5000


# -- the result ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StepSuggestion:
    """The outcome of :func:`suggest_step`: a table of candidates and the step chosen.

    Attributes
    ----------
    axis
        The stepped feature, e.g. ``"H"``.
    units
        Units of ``step``, ``reference_step`` and the table's ``step`` column ("" if unknown).
    step
        The suggested step, or ``None`` when no candidate meets ``tol`` (see :attr:`message`).
    tol
        The tolerance the errors were held to.
    quantity
        Name of the quantity: ``"magnetocaloric"``, ``"map"`` or the callable's name.
    table
        One row per candidate, ascending: ``step``, ``n_lines`` (lines to measure), ``error``,
        ``max_error``, ``spread`` and ``time_s`` (estimated measurement time, s).
    reference_step
        The fine step the candidates were compared with.
    curves
        The quantity per step (ensemble mean), dims ``("step", ...)``: the reference first
        (coordinate ``role`` = ``"reference"``), then every candidate, aligned onto the
        reference's coordinates; for plots.
    relative
        Whether errors are relative to the reference quantity's largest absolute value.
    error_units
        Units of ``error`` and ``max_error`` ("" when relative).
    reference_spread
        RMS over the reference quantity of its standard deviation across the twin's networks,
        scaled as the errors are: how well the twin knows the quantity itself, whatever the
        step (NaN for one network). It does not enter the choice, which compares each network
        with itself; a large value says the coarse data leave the quantity uncertain.
    description
        What the quantity is, for people.
    time_model
        The :class:`TimeModel` behind ``time_s``.
    unresolved_steps
        The steps of the twin's measured lines of ``axis`` that hold a jump they do not resolve
        (``DigitalTwin.unresolved_steps``): near them the quantity is limited by the step
        *along* the lines, whatever the step of ``axis``.
    resolution_note
        One sentence saying so, with the units ("" when there are none).
    """

    axis: str
    units: str
    step: float | None
    tol: float
    quantity: str
    table: pd.DataFrame
    reference_step: float
    curves: xr.DataArray
    relative: bool = True
    error_units: str = ""
    reference_spread: float = float("nan")
    description: str = ""
    time_model: TimeModel = field(default_factory=TimeModel)
    unresolved_steps: tuple[UnresolvedStep, ...] = ()
    resolution_note: str = ""

    def _row(self, step: float) -> pd.Series:
        return self.table.loc[np.isclose(self.table["step"], step)].iloc[0]

    def _fmt_error(self, value: float) -> str:
        if not math.isfinite(value):
            return "n/a"
        if self.relative:
            return f"{100 * value:.2f}%"
        return f"{value:.3g}"

    @property
    def message(self) -> str:
        """One sentence: the step chosen and its cost, or why none was."""
        unit = f" {self.units}" if self.units else ""
        tol = self._fmt_error(self.tol)
        if self.step is None:
            finest = self.table.iloc[0]
            return (
                f"no candidate step of {self.axis} meets tol {tol}: the finest, "
                f"{finest['step']:g}{unit}, has error {self._fmt_error(finest['error'])}; "
                "try finer candidates or a larger tol"
            )
        row = self._row(self.step)
        return (
            f"suggested step of {self.axis}: {self.step:g}{unit} "
            f"(error {self._fmt_error(row['error'])} below tol {tol}, {int(row['n_lines'])} lines,"
            f" about {format_duration(row['time_s'])})"
        )

    def as_json_step(self) -> dict[str, Any]:
        """``{"axis", "value", "units"}`` of the suggested step (value ``None`` if none)."""
        return {"axis": self.axis, "value": self.step, "units": self.units}

    def to_dict(self) -> dict[str, Any]:
        """Everything but the curves, JSON-serialisable (NaN becomes ``None``)."""
        rows = [
            {
                "step": jsonable(row.step),
                "n_lines": int(row.n_lines),
                "error": jsonable(row.error),
                "max_error": jsonable(row.max_error),
                "spread": jsonable(row.spread),
                "time_s": jsonable(row.time_s),
                "time": format_duration(row.time_s),
            }
            for row in self.table.itertuples(index=False)
        ]
        return {
            "axis": self.axis,
            "units": self.units,
            "step": jsonable(self.step),
            "tol": self.tol,
            "relative": self.relative,
            "error_units": self.error_units,
            "quantity": self.quantity,
            "description": self.description,
            "reference_step": self.reference_step,
            "reference_spread": jsonable(self.reference_spread),
            "time_model": asdict(self.time_model),
            "table": rows,
            "suggested_step": self.as_json_step(),
            "message": self.message,
            "unresolved_steps": [step.to_dict() for step in self.unresolved_steps],
            "resolution_note": self.resolution_note,
        }

    def __str__(self) -> str:
        unit = f" [{self.units}]" if self.units else ""
        err = "error" if self.relative else f"error [{self.error_units}]"
        header = ["step" + unit, "lines", err, "max error", "spread", "time"]
        rows = [
            [
                f"{r.step:g}",
                f"{int(r.n_lines)}",
                self._fmt_error(r.error),
                self._fmt_error(r.max_error),
                self._fmt_error(r.spread),
                format_duration(r.time_s),
            ]
            for r in self.table.itertuples(index=False)
        ]
        widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
        lines = [
            f"step of {self.axis} for {self.description or self.quantity}",
            f"compared with a reference step of {self.reference_step:g}"
            f"{' ' + self.units if self.units else ''}; tol {self._fmt_error(self.tol)}"
            + (
                f"; the twin's own spread of the quantity: {self._fmt_error(self.reference_spread)}"
                if math.isfinite(self.reference_spread)
                else ""
            ),
            "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)),
        ]
        for r, row in zip(self.table.itertuples(index=False), rows, strict=True):
            mark = "  <-" if self.step is not None and np.isclose(r.step, self.step) else ""
            lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + mark)
        lines.append(self.message)
        if self.resolution_note:
            lines.append(self.resolution_note)
        return "\n".join(lines)


# -- the search ----------------------------------------------------------------------------------


def suggest_step(
    twin: Twin,
    axis: str,
    candidates: Sequence[float] | ArrayLike | None = None,
    *,
    quantity: str | Quantity = "map",
    over: Mapping[str, ArrayLike] | ArrayLike | None = None,
    tol: float = DEFAULT_TOL,
    candidate_units: str | None = None,
    axis_units: str | None = None,
    reference_step: float | None = None,
    relative: bool = True,
    sweep_points: int = DEFAULT_SWEEP_POINTS,
    mass: float | None = None,
    mass_units: str = "g",
    target_units: str | None = None,
    field_change: float | None = None,
    time_model: TimeModel | None = None,
) -> StepSuggestion:
    """Simulate the measurement at each candidate step of ``axis`` and suggest the coarsest
    at which ``quantity`` has converged.

    Parameters
    ----------
    twin
        A :class:`~bluesky_digitwin.twin.DigitalTwin` (or any model with ``features``,
        ``target``, ``units``, ``ranges`` and ``predict``; its spread is then NaN unless it has
        ``predict_members``). Its ``unresolved_steps``, when it has them, are said in the
        suggestion (:attr:`StepSuggestion.resolution_note`).
    axis
        The stepped feature, e.g. ``"H"``.
    candidates
        Candidate steps, in ``candidate_units``; any order (they are sorted), no repeats, each
        at most the span of the axis. Default: for a field axis 0.05, 0.1, 0.15, 0.2, 0.3, 0.5,
        0.75 and 1 T (those within the span); for another axis 1, 2, 3, 4, 6, 10, 15 and 20 % of
        its learned span (the field steps relative to the paper's 5 T).
    quantity
        ``"map"`` (default), ``"magnetocaloric"`` or a callable on the simulated Dataset; see
        the module's documentation.
    over
        The sweep: values of the other feature (array; duplicates are dropped and the values
        sorted), or a mapping feature -> values. Default: ``sweep_points`` values evenly over
        each other feature's learned range.
    tol
        Largest acceptable error (a fraction when ``relative``), > 0.
    candidate_units
        Units of ``candidates`` and ``reference_step``, e.g. ``"T"`` for a field axis recorded
        in Oe (field units convert into each other). Default: the axis' own units.
    axis_units
        Units of the axis when the twin recorded none (or to override them).
    reference_step
        The fine step to compare with, below every candidate. Default: the finest / 4.
    relative
        Divide errors by the reference quantity's largest absolute value.
    sweep_points
        Points of the default sweep grid.
    mass, mass_units
        Sample mass for ``"magnetocaloric"`` when the target is a moment (emu, A m²).
    target_units
        Units of the target when the twin recorded none (or to override them), e.g. ``"emu"``.
    field_change
        For ``"magnetocaloric"``: μ0ΔH in T from the bottom of the learned field range to the
        field the |ΔS_M| is compared at; default the whole learned range.
    time_model
        How long a line and a change of the axis take; default :class:`TimeModel`'s.

    Returns
    -------
    StepSuggestion
        The table, the suggested step (or ``None``), the curves; ``print`` it for people,
        ``to_dict()`` for JSON.

    Raises
    ------
    DigitwinInputError
        An unknown axis or quantity; repeated, non-positive or too large candidates; a
        reference step not finer than all candidates; ``tol <= 0``; a missing mass or unknown
        units for ``"magnetocaloric"``; a quantity function that raises.
    """
    features = tuple(twin.features)
    target = str(twin.target)
    if axis not in features:
        raise DigitwinInputError(
            f"unknown axis {axis!r}; the twin's features are: {', '.join(features)}"
        )
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise DigitwinInputError(f"tol must be a number > 0, got {tol!r}")
    time_model = time_model or TimeModel()
    sweep_names = [f for f in features if f != axis]
    twin_units = {k: v for k, v in dict(twin.units).items() if v}
    a_units = axis_units or twin_units.get(axis)
    lo, hi = (float(v) for v in twin.ranges[axis])

    defaulted = candidates is None
    candidates, c_units = default_candidates(candidates, candidate_units, a_units, hi - lo)
    to_axis = axis_conversion(c_units, a_units, axis)
    steps = check_candidates(candidates)

    if field_change is not None and quantity != "magnetocaloric":
        raise DigitwinInputError("field_change applies to the magnetocaloric quantity only")
    over_grid = sweep_grid(twin, sweep_names, over, sweep_points)
    name, description, evaluate, error_units, hi = resolve_quantity(
        quantity,
        twin=twin,
        axis=axis,
        sweep_names=sweep_names,
        axis_units=a_units,
        target_units=target_units or twin_units.get(target),
        mass=mass,
        mass_units=mass_units,
        field_change=field_change,
        span=(lo, hi),
        sweep_units={s: twin_units.get(s) for s in sweep_names},
    )
    unit = f" {c_units}" if c_units else ""
    span = (hi - lo) / to_axis
    if defaulted and (steps <= span * (1 + 1e-9)).any():
        steps = steps[steps <= span * (1 + 1e-9)]  # a short range simply has fewer defaults
    too_big = steps[steps > span * (1 + 1e-9)]
    if too_big.size:
        raise DigitwinInputError(
            f"candidate step {too_big[0]:g}{unit} is larger than the learned range of {axis}, "
            f"{lo:g} to {hi:g}{' ' + a_units if a_units else ''} (span {span:g}{unit}); "
            "give steps within it"
        )
    if reference_step is None:
        reference_step = float(steps[0]) / REFERENCE_DIVISOR
    elif not (math.isfinite(reference_step) and 0 < reference_step < steps[0]):
        raise DigitwinInputError(
            f"reference_step must be > 0 and finer than every candidate (the finest is "
            f"{steps[0]:g}{unit}), got {reference_step!r}"
        )
    n_reference = math.floor(span / reference_step) + 2
    if n_reference > MAX_LINES:
        raise DigitwinInputError(
            f"the reference step {reference_step:g}{unit} would simulate {n_reference} lines "
            f"over {axis} {lo:g} to {hi:g}{' ' + a_units if a_units else ''}: are the candidates "
            "in the axis' units? (give candidate_units, e.g. 'T', or coarser steps)"
        )

    def run(step: float) -> tuple[np.ndarray, xr.DataArray, list[xr.DataArray]]:
        grid = axis_grid(lo, hi, step * to_axis)
        members = simulate_members(twin, target, axis, grid, over_grid, a_units)
        label = f"{step:g}{unit}"
        mean = run_quantity(evaluate, members.mean("member", keep_attrs=True), name, label)
        per_member = (
            [
                run_quantity(evaluate, members.isel(member=i), name, label)
                for i in range(members.sizes["member"])
            ]
            if members.sizes["member"] > 1
            else []
        )
        return grid, mean, per_member

    _, ref_mean, ref_members = run(reference_step)
    scale = relative_scale(ref_mean, relative)
    member_scales = [relative_scale(r, relative) for r in ref_members]
    ref_values = np.asarray(ref_mean.values, dtype=float)
    reference_spread = float("nan")
    if ref_members:
        stacked = np.stack([np.asarray(r.values, dtype=float) for r in ref_members])
        reference_spread = float(np.sqrt(np.nanmean(np.var(stacked, axis=0, ddof=1)))) / scale

    n_points = int(np.prod([len(v) for v in over_grid.values()])) if over_grid else 1
    sweep_span = float(np.ptp(next(iter(over_grid.values())))) if len(over_grid) == 1 else None
    rows, curves = [], [ref_values]
    for step in steps:
        grid, cand_mean, cand_members = run(float(step))
        label = f"{step:g}{unit}"
        aligned = align_quantity(cand_mean, ref_mean, name, label)
        rmse, worst = quantity_errors(aligned, ref_values)
        member_errors = [
            quantity_errors(align_quantity(c, r, name, label), np.asarray(r.values, dtype=float))[0]
            / s
            for c, r, s in zip(cand_members, ref_members, member_scales, strict=True)
        ]
        spread = float(np.std(member_errors, ddof=1)) if len(member_errors) > 1 else np.nan
        rows.append(
            {
                "step": float(step),
                "n_lines": len(grid),
                "error": rmse / scale,
                "max_error": worst / scale,
                "spread": spread,
                "time_s": time_model.seconds(len(grid), n_points, sweep_span),
            }
        )
        curves.append(aligned)
    table = pd.DataFrame(
        rows, columns=["step", "n_lines", "error", "max_error", "spread", "time_s"]
    )
    return StepSuggestion(
        axis=axis,
        units=c_units or "",
        step=_choose(table, tol),
        tol=float(tol),
        quantity=name,
        table=table,
        reference_step=float(reference_step),
        curves=quantity_curves(curves, ref_mean, [reference_step, *steps], c_units, description),
        relative=relative,
        error_units="" if relative else error_units,
        reference_spread=reference_spread,
        description=description,
        time_model=time_model,
        **_resolution_limits(twin, axis),
    )


def _resolution_limits(twin: Twin, axis: str) -> dict[str, Any]:
    """The twin's unresolved steps on lines of ``axis`` (when it records them), and the note."""
    steps = tuple(s for s in getattr(twin, "unresolved_steps", ()) if s.line_feature == axis)
    if not steps:
        return {}
    note = unresolved_steps_note(steps, twin.units, stepped=axis)
    return {"unresolved_steps": steps, "resolution_note": note}


def _choose(table: pd.DataFrame, tol: float) -> float | None:
    """The coarsest step below which every candidate's error is under ``tol``."""
    chosen = None
    for row in table.itertuples(index=False):  # ascending steps
        if not (math.isfinite(row.error) and row.error < tol):
            break
        chosen = float(row.step)
    return chosen
