"""Tables in, clean arrays out: reading and checking the data a twin learns from.

Everything that can be wrong with a user's table is caught here, once, with a message that names
the problem and the fix. The rest of the package works on the validated :class:`TrainingData`.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "MIN_POINTS",
    "DataWarning",
    "DigitwinInputError",
    "TrainingData",
    "as_dataset",
    "load_table",
    "make_grid",
    "points_to_arrays",
    "prepare_training_data",
]

#: Fewer points than this cannot be split into training and validation sets meaningfully.
MIN_POINTS = 10

TableLike = xr.Dataset | pd.DataFrame | str | os.PathLike


class DigitwinInputError(ValueError):
    """The user's input cannot be used; the message says why and what to do instead."""


class DataWarning(UserWarning):
    """Something in the user's data was skipped or repaired; the message says what."""


def load_table(path: str | os.PathLike) -> xr.Dataset:
    """Read a CSV (with a header row) or a netCDF file into a Dataset with dimension ``point``.

    Parameters
    ----------
    path
        ``.csv`` / ``.txt`` (comma separated, header row) or ``.nc`` / ``.netcdf``.

    Returns
    -------
    xarray.Dataset
        One 1-D variable per column, along the dimension ``point``.
    """
    path = Path(path)
    if not path.exists():
        raise DigitwinInputError(f"file not found: {path}")
    if path.is_dir():
        raise DigitwinInputError(f"{path} is a directory; give a CSV or netCDF file")
    if path.stat().st_size == 0:
        raise DigitwinInputError(f"{path} is empty; expected a table with a header row")
    suffix = path.suffix.lower()
    if suffix in {".nc", ".netcdf", ".nc4", ".cdf"}:
        try:
            with xr.open_dataset(path) as opened:
                ds = opened.load()
        except Exception as exc:  # the engines raise many types; all mean "not readable"
            raise DigitwinInputError(f"cannot read {path} as netCDF: {exc}") from None
        return _flatten_to_points(ds)
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DigitwinInputError(f"{path} has no columns; expected a header row") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DigitwinInputError(f"cannot read {path} as CSV: {exc}") from None
    if frame.shape[0] == 0:
        raise DigitwinInputError(f"{path} has a header but no data rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return as_dataset(frame)


def as_dataset(data: TableLike) -> xr.Dataset:
    """Return ``data`` (Dataset, DataFrame or path) as a Dataset along ``point``."""
    if isinstance(data, xr.Dataset):
        return _flatten_to_points(data)
    if isinstance(data, pd.DataFrame):
        frame = data.reset_index(drop=True)
        ds = xr.Dataset({str(c): ("point", frame[c].to_numpy()) for c in frame.columns})
        return ds
    if isinstance(data, (str, os.PathLike)):
        return load_table(data)
    raise DigitwinInputError(
        f"cannot learn from a {type(data).__name__}; "
        "give an xarray Dataset, a pandas DataFrame or the path of a CSV or netCDF file"
    )


def _flatten_to_points(ds: xr.Dataset) -> xr.Dataset:
    """Turn a gridded Dataset (e.g. M over dims T, H) into a table along ``point``."""
    if set(ds.dims) <= {"point"}:
        return ds
    names = list(ds.data_vars)
    if not names:
        raise DigitwinInputError("the Dataset has no data variables")
    broadcast = xr.broadcast(*[ds[n] for n in names])
    stacked = xr.Dataset(dict(zip(names, broadcast, strict=True))).stack(
        point=list(broadcast[0].dims)
    )
    table = stacked.reset_index("point")
    out = xr.Dataset()
    for name in [*table.coords, *table.data_vars]:
        if name == "point":
            continue
        var = table[name]
        if var.dims == ("point",):
            out[name] = ("point", var.values, var.attrs)
    return out


@dataclass(frozen=True)
class TrainingData:
    """Validated training data: float64 arrays, names, units and ranges.

    Attributes
    ----------
    x : ndarray, shape (n, n_features)
    y : ndarray, shape (n,)
    features : names of the columns of ``x``
    target : name of ``y``
    units : units by variable name ("" when unknown)
    """

    x: np.ndarray
    y: np.ndarray
    features: tuple[str, ...]
    target: str
    units: dict[str, str] = field(default_factory=dict)

    @property
    def n_points(self) -> int:
        return int(self.y.shape[0])

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        """The learned range of every feature (min, max)."""
        return {
            name: (float(self.x[:, i].min()), float(self.x[:, i].max()))
            for i, name in enumerate(self.features)
        }

    def sha256(self) -> str:
        """A hash of the numbers and names, so a saved twin can say exactly what it learned."""
        digest = hashlib.sha256()
        digest.update(repr((self.features, self.target)).encode())
        digest.update(np.ascontiguousarray(self.x, dtype="<f8").tobytes())
        digest.update(np.ascontiguousarray(self.y, dtype="<f8").tobytes())
        return digest.hexdigest()


def prepare_training_data(
    data: TableLike, features: Sequence[str], target: str, *, min_points: int = MIN_POINTS
) -> TrainingData:
    """Check a table and return the arrays a twin trains on.

    Rows with NaN or infinite values are dropped with a :class:`DataWarning` that counts them.

    Raises
    ------
    DigitwinInputError
        Unknown or non-numeric columns, an all-NaN target, too few points, a constant target or a
        feature with one value only.
    """
    if isinstance(features, str):
        features = [features]
    features = [str(f) for f in features]
    target = str(target)
    if not features:
        raise DigitwinInputError("no features given; name at least one input column")
    if target in features:
        raise DigitwinInputError(f"{target!r} is both a feature and the target; pick one role")
    if len(set(features)) != len(features):
        raise DigitwinInputError(f"features repeat a name: {features}")
    ds = as_dataset(data)
    available = [str(n) for n in [*ds.data_vars, *ds.coords] if ds[n].dims == ("point",)]
    missing = [n for n in [*features, target] if n not in available]
    if missing:
        raise DigitwinInputError(
            f"unknown column(s) {', '.join(map(repr, missing))}; "
            f"the data has: {', '.join(available) or '(none)'}"
        )
    columns = {name: _numeric(ds[name], name) for name in [*features, target]}
    x = np.column_stack([columns[f] for f in features])
    y = columns[target]
    if not np.isfinite(y).any():
        raise DigitwinInputError(f"the target {target!r} has no finite value (all NaN or inf)")
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
    dropped = int((~keep).sum())
    if dropped:
        warnings.warn(
            f"dropped {dropped} of {len(y)} rows with NaN or infinite values",
            DataWarning,
            stacklevel=2,
        )
        x, y = x[keep], y[keep]
    if len(y) < min_points:
        raise DigitwinInputError(
            f"only {len(y)} usable points; a twin needs at least {min_points} "
            "(measure more points or lower min_points)"
        )
    if np.ptp(y) == 0:
        raise DigitwinInputError(
            f"the target {target!r} is constant ({y[0]:g}); there is nothing to learn"
        )
    for i, name in enumerate(features):
        if np.ptp(x[:, i]) == 0:
            raise DigitwinInputError(
                f"feature {name!r} has one value only ({x[0, i]:g}); "
                "the twin cannot learn a dependence on it: drop it from the features"
            )
    units = {name: str(ds[name].attrs.get("units", "")) for name in [*features, target]}
    return TrainingData(x=x, y=y, features=tuple(features), target=target, units=units)


def _numeric(var: xr.DataArray, name: str) -> np.ndarray:
    values = np.asarray(var.values)
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    if values.dtype.kind == "c":
        raise DigitwinInputError(f"column {name!r} is complex; give its real part or magnitude")
    converted = pd.to_numeric(pd.Series(values.ravel()), errors="coerce").to_numpy(np.float64)
    bad = [
        v
        for v, c in zip(values.ravel(), converted, strict=True)
        if np.isnan(c) and not _is_missing(v)
    ]
    if bad:
        examples = ", ".join(repr(v) for v in bad[:3])
        raise DigitwinInputError(
            f"column {name!r} is not numeric (e.g. {examples}); give numbers only"
        )
    return converted


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in {"", "nan", "na", "n/a", "null", "none"}
    try:
        return bool(np.isnan(value))
    except TypeError:
        return False


def make_grid(**axes: Sequence[float] | np.ndarray) -> xr.Dataset:
    """Build a rectangular grid of coordinates to simulate a measurement on.

    Examples
    --------
    >>> grid = make_grid(T=np.linspace(10, 60, 501), H=[1e4, 2e4, 3e4])
    >>> twin.predict(grid)["M"].dims
    ('T', 'H')
    """
    if not axes:
        raise DigitwinInputError("make_grid needs at least one axis, e.g. make_grid(T=[...])")
    coords = {}
    for name, values in axes.items():
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
        if arr.ndim != 1 or arr.size == 0:
            raise DigitwinInputError(f"axis {name!r} must be a non-empty 1-D sequence of numbers")
        coords[name] = arr
    return xr.Dataset(coords=coords)


def points_to_arrays(
    points: Mapping[str, Any] | xr.Dataset | pd.DataFrame, features: Sequence[str]
) -> tuple[np.ndarray, dict[str, xr.DataArray], tuple[str, ...]]:
    """Turn prediction coordinates into a 2-D feature array plus what is needed to shape the result.

    Returns
    -------
    x : ndarray, shape (n, n_features)
    coords : the feature coordinates as given, as DataArrays
    dims : the dimensions of the result (its shape is that of the broadcast coordinates)
    """
    if isinstance(points, pd.DataFrame):
        points = {str(c): points[c].to_numpy() for c in points.columns}
    if isinstance(points, xr.Dataset):
        names = {str(n) for n in [*points.coords, *points.data_vars]}
        source: Mapping[str, Any] = {n: points[n] for n in names}
    elif isinstance(points, Mapping):
        source = points
    else:
        raise DigitwinInputError(
            f"cannot predict at a {type(points).__name__}; give a dict of arrays, "
            "an xarray Dataset (e.g. from make_grid) or a pandas DataFrame"
        )
    missing = [f for f in features if f not in source]
    if missing:
        raise DigitwinInputError(
            f"the coordinates lack {', '.join(map(repr, missing))}; "
            f"this twin needs {', '.join(features)} (got {', '.join(map(str, source)) or 'none'})"
        )
    arrays = []
    for f in features:
        value = source[f]
        if isinstance(value, xr.DataArray):
            arr = value.astype(np.float64) if value.dtype.kind in "biuf" else None
        else:
            raw = np.asarray(value)
            arr = (
                xr.DataArray(raw.astype(np.float64), dims=("point",))
                if (raw.ndim == 1 and raw.dtype.kind in "biuf")
                else None
            )
            if raw.ndim == 0 and raw.dtype.kind in "biuf":
                arr = xr.DataArray(float(raw))
        if arr is None:
            raise DigitwinInputError(f"coordinate {f!r} must be numbers in a 1-D array")
        arrays.append(arr)
    try:
        broadcast = xr.broadcast(*arrays)
    except ValueError as exc:
        raise DigitwinInputError(f"the coordinates do not line up: {exc}") from None
    dims = broadcast[0].dims
    x = np.column_stack([b.transpose(*dims).values.ravel() for b in broadcast])
    if x.shape[0] == 0:
        raise DigitwinInputError("no coordinates to predict at")
    # Keep the coordinates as given (e.g. 1-D dimension coordinates of a grid); xarray lays
    # them out against the result's dimensions.
    coords = dict(zip(features, arrays, strict=True))
    return x, coords, tuple(dims)
