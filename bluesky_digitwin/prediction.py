"""The layout of a prediction: what every model (the twin, the baselines) returns.

A prediction is an xarray Dataset with the model's target (``<target>``), its uncertainty
(``<target>_std``) and an ``outside_range`` flag, over the dimensions of the coordinates asked
for, with units in ``attrs`` and ``data_origin="simulated"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bluesky_digitwin.data import DataWarning, points_to_arrays
from bluesky_digitwin.errors import DigitwinWarning

__all__ = ["OutsideRangeWarning", "Points", "prediction_dataset"]

Points = Mapping[str, Any] | xr.Dataset | pd.DataFrame


class OutsideRangeWarning(DigitwinWarning):
    """A prediction was asked for outside the range the model learned: it extrapolates there."""


def prediction_dataset(
    points: Points,
    features: Sequence[str],
    target: str,
    units: Mapping[str, str],
    ranges: Mapping[str, tuple[float, float]],
    evaluate: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    warn: bool = True,
    attrs: Mapping[str, Any] | None = None,
    std_long_name: str = "ensemble standard deviation",
    what: str = "the twin",
    stacklevel: int = 2,
) -> xr.Dataset:
    """Evaluate a model at ``points`` and lay the result out as :meth:`DigitalTwin.predict` does.

    Every model (the twin, the classical baselines) returns the same variables, dimensions,
    coordinates and units through this one function.

    Parameters
    ----------
    points
        A dict of equal-length arrays, a pandas DataFrame or an xarray Dataset (e.g. from
        :func:`~bluesky_digitwin.data.make_grid`).
    features, target, units, ranges
        The model's feature names, target name, units by name and learned (min, max) ranges.
    evaluate
        ``evaluate(x, outside) -> (values, std)``: ``x`` has shape (n, n_features) in the order
        of ``features``, ``outside`` flags the rows outside ``ranges``; both results shape (n,).
        A point with a NaN or infinite coordinate comes as a row of NaN; its result is NaN
        whatever ``evaluate`` returns, it is flagged outside, and a
        :class:`~bluesky_digitwin.errors.DataWarning` counts such points.
    warn
        Warn (:class:`OutsideRangeWarning`) when a point lies outside.
    attrs
        Attributes of the Dataset; ``data_origin="simulated"`` is always set.
    std_long_name
        ``long_name`` of ``<target>_std``: what the spread means for this model.
    what
        How the warning names the model, e.g. "the twin" or "the linear baseline".
    stacklevel
        As for :func:`warnings.warn`, counted from the caller of this function (2: the caller of
        the ``predict`` method that calls it).

    Returns
    -------
    xarray.Dataset
        ``<target>``, ``<target>_std`` and ``outside_range`` (bool) over the dimensions of the
        broadcast coordinates, with the feature coordinates; units in ``attrs``.
    """
    x, coords, dims = points_to_arrays(points, features)
    shape = tuple(next(c.sizes[d] for c in coords.values() if d in c.sizes) for d in dims)
    # A point with a NaN or infinite coordinate has no prediction (NaN), and is outside the
    # learned range: the model sees NaN there (and networks answer NaN), never inf.
    unusable = ~np.isfinite(x).all(axis=1)
    if unusable.any():
        x = x.copy()
        x[unusable] = np.nan
        warnings.warn(
            f"{int(unusable.sum())} of {len(x)} points have NaN or infinite coordinates; "
            "their prediction is NaN (give finite coordinates to predict there)",
            DataWarning,
            stacklevel=stacklevel + 1,
        )
    outside = unusable.copy()
    for i, name in enumerate(features):
        lo, hi = ranges[name]
        outside |= (x[:, i] < lo) | (x[:, i] > hi)
    values, std = evaluate(x, outside)
    values = np.where(unusable, np.nan, np.asarray(values, dtype=np.float64))
    std = np.where(unusable, np.nan, np.asarray(std, dtype=np.float64))
    extrapolated = outside & ~unusable
    if warn and extrapolated.any():
        span = "; ".join(f"{k} {lo:g} to {hi:g}" for k, (lo, hi) in ranges.items())
        warnings.warn(
            f"{int(extrapolated.sum())} of {len(x)} points lie outside the learned range "
            f"({span}); {what} only interpolates, so it extrapolates there",
            OutsideRangeWarning,
            stacklevel=stacklevel + 1,
        )
    # Units travel in attrs where known; an unknown unit is left out rather than set to "".
    unit_attrs = {name: {"units": units[name]} if units.get(name) else {} for name in units}
    target_attrs = unit_attrs.get(target, {})
    return xr.Dataset(
        {
            target: (dims, np.asarray(values).reshape(shape), target_attrs),
            f"{target}_std": (
                dims,
                np.asarray(std).reshape(shape),
                {**target_attrs, "long_name": std_long_name},
            ),
            "outside_range": (dims, outside.reshape(shape)),
        },
        coords={name: arr.assign_attrs(unit_attrs.get(name, {})) for name, arr in coords.items()},
        # Whatever a model predicts is simulated data, never a measurement (paper §3.5).
        attrs={**dict(attrs or {}), "data_origin": "simulated"},
    )
