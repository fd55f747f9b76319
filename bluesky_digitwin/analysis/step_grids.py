"""The lines a candidate step measures: candidate steps, their units, and the grids simulated.

Used by :func:`~bluesky_digitwin.analysis.steps.suggest_step` and by the plans that measure
the lines it suggests (:func:`axis_grid`: every line from the bottom of the range, ending
exactly at its top).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from bluesky_digitwin.data import DigitwinInputError

from .units import FIELD_UNITS, normalize_unit

__all__ = [
    "DEFAULT_FIELD_CANDIDATES_T",
    "DEFAULT_SPAN_FRACTIONS",
    "axis_conversion",
    "axis_grid",
    "check_candidates",
    "default_candidates",
    "is_field_unit",
    "sweep_grid",
]

#: Default candidate steps of a field axis, in tesla (μ0H).
DEFAULT_FIELD_CANDIDATES_T = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)
#: Default candidates of any other axis, as fractions of its learned span: the field defaults
#: relative to the paper's 5 T range.
DEFAULT_SPAN_FRACTIONS = tuple(s / 5.0 for s in DEFAULT_FIELD_CANDIDATES_T)


def is_field_unit(units: str | None) -> bool:
    """Whether ``units`` are units of a magnetic field (Oe, T, A/m, ...)."""
    return units is not None and normalize_unit(units) in FIELD_UNITS


def default_candidates(
    candidates: Any, candidate_units: str | None, axis_units: str | None, span: float
) -> tuple[Any, str | None]:
    """The candidates and the units they are in (the axis' own by default)."""
    if candidates is not None:
        return candidates, candidate_units or axis_units
    if is_field_unit(axis_units):
        units = candidate_units or "T"
        if not is_field_unit(units):
            raise DigitwinInputError(
                f"candidate_units {units!r} is not a field unit, but the axis is a field in "
                f"{axis_units}"
            )
        per_tesla = FIELD_UNITS[normalize_unit(units)]
        return [s * per_tesla for s in DEFAULT_FIELD_CANDIDATES_T], units
    if candidate_units is not None and candidate_units != axis_units:
        raise DigitwinInputError(
            "without candidates, the default candidates are fractions of the axis' span in its "
            f"own units; candidate_units {candidate_units!r} cannot be used: give candidates"
        )
    return [f * span for f in DEFAULT_SPAN_FRACTIONS], axis_units


def axis_conversion(candidate_units: str | None, axis_units: str | None, axis: str) -> float:
    """How many axis units one candidate unit is."""
    if candidate_units is None or (
        axis_units is not None and normalize_unit(candidate_units) == normalize_unit(axis_units)
    ):
        return 1.0
    if axis_units is None:
        raise DigitwinInputError(
            f"the twin records no units for {axis!r}, so steps in {candidate_units!r} cannot be "
            f"converted: give axis_units (CLI: --axis-units), e.g. 'Oe'"
        )
    if is_field_unit(candidate_units) and is_field_unit(axis_units):
        return (
            FIELD_UNITS[normalize_unit(axis_units)] / FIELD_UNITS[normalize_unit(candidate_units)]
        )
    raise DigitwinInputError(
        f"cannot convert steps in {candidate_units!r} to the units of {axis!r}, {axis_units!r}; "
        "give the candidates in the axis' units"
    )


def check_candidates(candidates: Any) -> np.ndarray:
    try:
        steps = np.atleast_1d(np.asarray(candidates, dtype=float))
    except (TypeError, ValueError):
        raise DigitwinInputError(f"candidates must be numbers, got {candidates!r}") from None
    if steps.ndim != 1 or steps.size == 0:
        raise DigitwinInputError("give at least one candidate step")
    bad = steps[~(np.isfinite(steps) & (steps > 0))]
    if bad.size:
        raise DigitwinInputError(f"candidate steps must be positive numbers, got {bad[0]:g}")
    steps = np.sort(steps)  # any order is fine; the table is ascending
    repeated = steps[1:][np.isclose(steps[1:], steps[:-1], rtol=1e-9, atol=0)]
    if repeated.size:
        raise DigitwinInputError(
            f"candidate step {repeated[0]:g} is given more than once; give each step once"
        )
    return steps


def axis_grid(lo: float, hi: float, step: float) -> np.ndarray:
    """``lo, lo + step, ...`` up to ``hi``, ending exactly at ``hi`` (a shorter last step if
    the steps do not land on it; one within 0.1 % of a step counts as landing)."""
    n = math.floor((hi - lo) / step + 1e-3)
    grid = lo + step * np.arange(n + 1)
    if hi - grid[-1] <= 1e-3 * step:
        grid[-1] = hi
    else:
        grid = np.append(grid, hi)
    return grid


def sweep_grid(
    twin: Any, sweep_names: list[str], over: Any, sweep_points: int
) -> dict[str, np.ndarray]:
    if not (isinstance(sweep_points, (int, np.integer)) and sweep_points >= 2):
        raise DigitwinInputError(f"sweep_points must be a whole number >= 2, got {sweep_points!r}")
    given: dict[str, Any]
    if over is None:
        given = {}
    elif isinstance(over, Mapping):
        given = dict(over)
        unknown = [k for k in given if k not in sweep_names]
        if unknown:
            raise DigitwinInputError(
                f"over names {', '.join(map(repr, unknown))}, which is not a sweep feature; "
                f"the sweep features are: {', '.join(sweep_names) or '(none)'}"
            )
    elif len(sweep_names) == 1:
        given = {sweep_names[0]: over}
    else:
        raise DigitwinInputError(
            f"the twin sweeps {len(sweep_names)} features ({', '.join(sweep_names)}); "
            "give over as a mapping feature -> values"
        )
    grid = {}
    for name in sweep_names:
        if name in given:
            try:
                values = np.unique(np.asarray(given[name], dtype=float).ravel())
            except (TypeError, ValueError):
                raise DigitwinInputError(f"over[{name!r}] must be numbers") from None
            if values.size == 0 or not np.isfinite(values).all():
                raise DigitwinInputError(f"over[{name!r}] must be finite numbers, at least one")
        else:
            lo, hi = twin.ranges[name]
            values = np.linspace(lo, hi, int(sweep_points))
        grid[name] = values
    return grid
