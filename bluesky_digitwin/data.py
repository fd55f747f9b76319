"""Tables in, clean arrays out: reading and checking the data a twin learns from.

Everything that can be wrong with a user's table is caught here, once, with a message that names
the problem and the fix. The rest of the package works on the validated :class:`TrainingData`.
"""

from __future__ import annotations

import csv
import hashlib
import os
import stat
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

# Defined with the package's other exceptions; importable from here as they always were.
from bluesky_digitwin.errors import DataWarning, DigitwinInputError

__all__ = [
    "MIN_POINTS",
    "TrainingData",
    "as_dataset",
    "load_table",
    "make_grid",
    "points_to_arrays",
    "prepare_training_data",
    "warn_every_time",
]

#: Fewer points than this cannot be split into training and validation sets meaningfully.
MIN_POINTS = 10

TableLike = xr.Dataset | pd.DataFrame | str | os.PathLike


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
    try:
        status = path.stat()
    except FileNotFoundError:
        raise DigitwinInputError(
            f"file not found: {path}; check the path (relative paths start at {os.getcwd()})"
        ) from None
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, no permission
        raise DigitwinInputError(f"cannot open {path}: {exc}; check the path") from None
    if stat.S_ISDIR(status.st_mode):
        raise DigitwinInputError(f"{path} is a directory; give a CSV or netCDF file")
    size = status.st_size
    if size == 0:
        raise DigitwinInputError(f"{path} is empty; expected a table with a header row")
    suffix = path.suffix.lower()
    if suffix in {".nc", ".netcdf", ".nc4", ".cdf"}:
        try:
            # A classic netCDF file can declare two variables of one name, and its readers keep
            # one of them silently; (HDF5-based netCDF-4 cannot hold two.)
            _check_repeated_names(path, _classic_netcdf_variables(path), "variable")
            with xr.open_dataset(path) as opened:
                ds = opened.load()
        except DigitwinInputError:
            raise
        except Exception as exc:  # the engines raise many types; all mean "not readable"
            raise DigitwinInputError(
                f"cannot read {path} as netCDF ({_one_line(exc)}); give a netCDF file, or a "
                "CSV file with a header row (named .csv)"
            ) from None
        return _flatten_to_points(ds)
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DigitwinInputError(f"{path} has no columns; expected a header row") from None
    except (ValueError, UnicodeDecodeError, OSError) as exc:  # ParserError is a ValueError
        raise DigitwinInputError(
            f"cannot read {path} as CSV ({_one_line(exc)}); give a comma-separated UTF-8 table "
            "with a header row and as many fields in every row"
        ) from None
    if frame.shape[0] == 0:
        raise DigitwinInputError(
            f"{path} has a header but no data rows; give at least one row of numbers under it"
        )
    # pandas renames a repeated column ("T", "T" becomes "T", "T.1"), so the header is read as
    # written to see the repeats.
    _check_repeated_names(path, _csv_header(path), "column")
    frame.columns = [str(c).strip() for c in frame.columns]
    return as_dataset(frame)


def _csv_header(path: Path) -> list[str]:
    """The names in the header row of a CSV file as written (stripped), before pandas renames."""
    with open(path, newline="", encoding="utf-8-sig") as file:
        for row in csv.reader(file):
            if any(cell.strip() for cell in row):  # pandas skips blank lines before the header
                return [cell.strip() for cell in row]
    return []


def _classic_netcdf_variables(path: Path) -> list[str]:
    """The variable names a classic netCDF file declares, repeats included ([] for netCDF-4).

    Follows the header layout of the netCDF classic format specification (CDF-1, CDF-2, CDF-5):
    https://docs.unidata.ucar.edu/netcdf-c/current/file_format_specifications.html
    """
    with open(path, "rb") as file:
        magic = file.read(4)
        if magic[:3] != b"CDF" or magic[3:] not in (b"\x01", b"\x02", b"\x05"):
            return []
        version = magic[3]
        count_size = 8 if version == 5 else 4  # NON_NEG counts and lengths

        def number(size: int) -> int:
            return int.from_bytes(file.read(size), "big")

        def name() -> str:
            length = number(count_size)
            raw = file.read(length)
            file.read(-length % 4)  # names are padded to 4 bytes
            return raw.decode("utf-8", errors="replace")

        def skip_attributes() -> None:
            number(4)  # NC_ATTRIBUTE, or ABSENT
            for _ in range(number(count_size)):
                name()
                size = _NC_TYPE_SIZES.get(number(4), 1)
                nbytes = number(count_size) * size
                file.read(nbytes + -nbytes % 4)

        number(count_size)  # the number of records
        number(4)  # NC_DIMENSION, or ABSENT
        for _ in range(number(count_size)):
            name()
            number(count_size)  # its length
        skip_attributes()  # global attributes
        number(4)  # NC_VARIABLE, or ABSENT
        names = []
        for _ in range(number(count_size)):
            names.append(name())
            file.read(number(count_size) * count_size)  # dimension ids
            skip_attributes()
            file.read(4 + count_size + (4 if version == 1 else 8))  # type, vsize, begin
        return names


#: Bytes per value of each netCDF classic type (NC_BYTE ... NC_UINT64).
_NC_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}


def _check_repeated_names(path: Path, names: Sequence[str], what: str) -> None:
    """Refuse a file in which two columns (variables) have one name: which one would be used?"""
    for name in dict.fromkeys(names):
        positions = [i + 1 for i, n in enumerate(names) if n == name]
        if len(positions) > 1:
            where = ", ".join(map(str, positions))
            raise DigitwinInputError(
                f"{path} has {len(positions)} {what}s named {name!r} ({what}s {where}); "
                f"rename them so that each {what} has a name of its own"
            )


def as_dataset(data: TableLike) -> xr.Dataset:
    """Return ``data`` (Dataset, DataFrame or path) as a Dataset along ``point``."""
    if isinstance(data, xr.Dataset):
        return _flatten_to_points(data)
    if isinstance(data, pd.DataFrame):
        frame = data.reset_index(drop=True)
        _check_unique([str(c) for c in frame.columns], "columns")
        return xr.Dataset(
            {str(c): ("point", frame.iloc[:, i].to_numpy()) for i, c in enumerate(frame.columns)}
        )
    if isinstance(data, (str, os.PathLike)):
        return load_table(data)
    raise DigitwinInputError(
        f"cannot learn from a {type(data).__name__}; "
        "give an xarray Dataset, a pandas DataFrame or the path of a CSV or netCDF file"
    )


def _flatten_to_points(ds: xr.Dataset) -> xr.Dataset:
    """Turn a gridded Dataset (e.g. M over dims T, H) into a table along ``point``.

    A Dataset with a ``point`` dimension already is a table: its 1-D variables along ``point``
    are the columns, and variables of other dimensions (e.g. an image per point) are not.
    """
    if "point" in ds.dims or not ds.dims:
        return ds
    names = list(ds.data_vars)
    if not names:
        raise DigitwinInputError(
            "the Dataset has no data variables; give the target as one, e.g. "
            "ds['M'] = (('T', 'H'), values) with T and H as coordinates"
        )
    try:
        broadcast = xr.broadcast(*[ds[n] for n in names])
        stacked = xr.Dataset(dict(zip(names, broadcast, strict=True))).stack(
            point=list(broadcast[0].dims)
        )
    except ValueError as exc:  # xarray's word for a layout it cannot broadcast or stack
        raise DigitwinInputError(
            f"cannot lay the Dataset out as a table ({_one_line(exc)}); give 1-D variables "
            "along 'point', or a grid: data variables over dimensions with coordinates"
        ) from None
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
    data: TableLike,
    features: Sequence[str],
    target: str,
    *,
    min_points: int = MIN_POINTS,
    stacklevel: int = 1,
) -> TrainingData:
    """Check a table and return the arrays a twin trains on.

    Rows with NaN or infinite values are dropped with a :class:`DataWarning` that counts them,
    shown on every call (:func:`warn_every_time`), from the caller (``stacklevel=1``) or, e.g.
    with ``stacklevel=2``, from the caller's caller.

    Raises
    ------
    DigitwinInputError
        Unknown, repeated or non-numeric columns (text, complex numbers, dates), no rows, an
        all-NaN target, too few points, a constant target, a feature with one value only, or a
        column whose spread float64 cannot compute with (beyond about 1e154, or below 2e-308).
    """
    if isinstance(features, str):
        features = [features]
    if not isinstance(features, Iterable) or isinstance(features, bytes):
        raise DigitwinInputError(
            f"features must be a list of column names, got a {type(features).__name__}; "
            "e.g. features=['T', 'H']"
        )
    if not isinstance(target, (str, int, float, np.generic)):
        raise DigitwinInputError(
            f"the target must be one column name, got a {type(target).__name__}; "
            "e.g. target='M' (one twin learns one quantity)"
        )
    features = [str(f) for f in features]
    target = str(target)
    if not features:
        raise DigitwinInputError("no features given; name at least one input column")
    if target in features:
        raise DigitwinInputError(f"{target!r} is both a feature and the target; pick one role")
    if len(set(features)) != len(features):
        raise DigitwinInputError(f"features repeat a name: {features}; name each feature once")
    ds = as_dataset(data)
    available = [str(n) for n in [*ds.data_vars, *ds.coords] if ds[n].dims == ("point",)]
    missing = [n for n in [*features, target] if n not in available]
    if missing:
        # A variable that is there but not one value per point is a different mistake.
        shaped = [f"{n!r} has dimensions {ds[n].dims}" for n in missing if n in ds.variables]
        hint = f" ({'; '.join(shaped)}: a column is 1-D along 'point')" if shaped else ""
        raise DigitwinInputError(
            f"unknown column(s) {', '.join(map(repr, missing))}{hint}; "
            f"the data has: {', '.join(available) or '(none)'}"
        )
    columns = {name: _numeric(ds[name], name) for name in [*features, target]}
    x = np.column_stack([columns[f] for f in features])
    y = columns[target]
    if len(y) == 0:
        raise DigitwinInputError("the data has no rows; give a table with at least one point")
    if not np.isfinite(y).any():
        raise DigitwinInputError(
            f"the target {target!r} has no finite value (all NaN or inf); check that it names "
            "the measured column and that the measurement worked"
        )
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
    dropped = int((~keep).sum())
    if dropped:
        warn_every_time(
            f"dropped {dropped} of {len(y)} rows with NaN or infinite values",
            DataWarning,
            stacklevel=stacklevel + 1,
        )
        x, y = x[keep], y[keep]
    if len(y) < min_points:
        raise DigitwinInputError(
            f"only {len(y)} usable points; a twin needs at least {min_points} "
            "(measure more points or lower min_points)"
        )
    # min == max, not np.ptp(...) == 0: a spread beyond float64 (refused below, with its fix)
    # would overflow the subtraction and print numpy's RuntimeWarning before that error.
    if y.min() == y.max():
        raise DigitwinInputError(
            f"the target {target!r} is constant ({y[0]:g}); there is nothing to learn: check "
            "that it names the measured quantity and that the detector responded"
        )
    for i, name in enumerate(features):
        if x[:, i].min() == x[:, i].max():
            raise DigitwinInputError(
                f"feature {name!r} has one value only ({x[0, i]:g}); "
                "the twin cannot learn a dependence on it: drop it from the features"
            )
    for name, values in [*zip(features, x.T, strict=True), (target, y)]:
        _check_scale(values, name)
    units = {name: _units(ds[name]) for name in [*features, target]}
    return TrainingData(x=x, y=y, features=tuple(features), target=target, units=units)


def warn_every_time(message: str, category: type[Warning], stacklevel: int = 1) -> None:
    """Like :func:`warnings.warn`, but shown on every call, not once per place in the code.

    A scientist who fits the same table twice in one session should hear twice that rows were
    dropped; Python's default filter would stay silent the second time. The caller's filters
    still apply: ``warnings.simplefilter("ignore")`` around the call silences it, and "error"
    raises it.

    Parameters
    ----------
    stacklevel
        As for :func:`warnings.warn`: 1 points at the function that calls this one, 2 at its
        caller.
    """
    frame = sys._getframe(stacklevel)  # the code the warning points at
    warnings.warn_explicit(
        message,
        category,
        frame.f_code.co_filename,
        frame.f_lineno,
        module=frame.f_globals.get("__name__"),
        registry=None,  # no record of earlier warnings: show it every time
        module_globals=frame.f_globals,
    )


def _check_unique(names: Sequence[str], what: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DigitwinInputError(
            f"the {what} repeat the name(s) {', '.join(map(repr, repeated))}; give each "
            "column a name of its own"
        )


def _check_scale(values: np.ndarray, name: str) -> None:
    """Refuse a column whose spread float64 cannot compute, as training must (mean, std)."""
    with np.errstate(all="ignore"):
        centre, spread = float(values.mean()), float(values.std())
    largest = float(np.abs(values).max())
    if not (np.isfinite(centre) and np.isfinite(spread)):
        raise DigitwinInputError(
            f"column {name!r} is too large to compute with (values up to {largest:g}); "
            "rescale it, e.g. to other units"
        )
    if spread < np.finfo(np.float64).tiny:
        raise DigitwinInputError(
            f"column {name!r} varies by only {spread:g}, below what float64 resolves; "
            "rescale it, e.g. to other units"
        )


def _units(var: xr.DataArray) -> str:
    units = var.attrs.get("units", "")
    if isinstance(units, bytes):
        units = units.decode(errors="replace")
    return units if isinstance(units, str) else ""


def _numeric(var: xr.DataArray, name: str) -> np.ndarray:
    values = np.asarray(var.values)
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    if values.dtype.kind == "c":
        raise DigitwinInputError(f"column {name!r} is complex; give its real part or magnitude")
    if values.dtype.kind in "mM":
        # As numbers these would be nanoseconds, and a missing one a huge negative number.
        raise DigitwinInputError(
            f"column {name!r} holds dates or durations; convert it to numbers, e.g. seconds"
        )
    try:
        numbers = pd.to_numeric(pd.Series(values.ravel()), errors="coerce")
    except (TypeError, ValueError, OverflowError):
        # e.g. an int beyond float64 among other objects: convert one by one.
        numbers = pd.Series([_to_float(v) for v in values.ravel()], dtype=np.float64)
    if numbers.dtype.kind == "c":
        raise DigitwinInputError(f"column {name!r} is complex; give its real part or magnitude")
    converted = numbers.to_numpy(np.float64)
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


def _to_float(value: Any) -> float:
    """One cell as a float; NaN if it is no number, inf if beyond float64."""
    if isinstance(value, str):
        try:
            return float(pd.to_numeric(value.strip()))
        except (TypeError, ValueError, OverflowError):
            return np.nan
    if isinstance(value, (int, float, np.integer, np.floating)):
        try:
            return float(value)
        except OverflowError:  # an int beyond float64
            return np.inf if value > 0 else -np.inf
    return np.nan


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


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
        raise DigitwinInputError(
            "make_grid got no axis; give at least one, e.g. make_grid(T=[...])"
        )
    coords = {}
    for name, values in axes.items():
        try:
            arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
        except (TypeError, ValueError):  # text, or a ragged list of lists
            arr = np.empty((0, 0))
        if arr.ndim != 1 or arr.size == 0:
            raise DigitwinInputError(
                f"axis {name!r} is not a non-empty 1-D sequence of numbers; give one, "
                f"e.g. {name}=np.linspace(10, 60, 51)"
            )
        # NaN or inf are let through: the prediction there is NaN, with a DataWarning.
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
        _check_unique([str(c) for c in points.columns], "columns")
        points = {str(c): points.iloc[:, i].to_numpy() for i, c in enumerate(points.columns)}
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
        arr = None
        if isinstance(value, xr.DataArray):
            arr = value.astype(np.float64) if value.dtype.kind in "biuf" else None
        else:
            try:
                raw = np.asarray(value)
            except ValueError:  # a ragged list of lists
                raw = np.asarray(None)
            if raw.ndim == 1 and raw.dtype.kind in "biuf":
                arr = xr.DataArray(raw.astype(np.float64), dims=("point",))
            elif raw.ndim == 0 and raw.dtype.kind in "biuf":
                arr = xr.DataArray(float(raw))
        if arr is None:
            raise DigitwinInputError(
                f"coordinate {f!r} is not numbers in a 1-D array; give numbers, e.g. a list "
                "of floats or a Dataset from make_grid"
            )
        arrays.append(arr)
    try:
        # Exact: coordinates whose index labels differ are a mistake, not something to align
        # (an outer join would invent points and fill them with NaN).
        broadcast = xr.broadcast(*xr.align(*arrays, join="exact"))
    except ValueError as exc:
        raise DigitwinInputError(
            f"the coordinates do not line up ({_one_line(exc)}); give arrays of one length "
            "(one point each) or a grid from make_grid"
        ) from None
    dims = broadcast[0].dims
    x = np.column_stack([b.transpose(*dims).values.ravel() for b in broadcast])
    if x.shape[0] == 0:
        raise DigitwinInputError("no coordinates to predict at; give at least one point")
    # Keep the coordinates as given (e.g. 1-D dimension coordinates of a grid); xarray lays
    # them out against the result's dimensions.
    coords = dict(zip(features, arrays, strict=True))
    return x, coords, tuple(dims)
