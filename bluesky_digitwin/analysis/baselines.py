"""Classical interpolators to compare the digital twin with: linear, cubic spline and RBF.

Terashima et al., Digital Discovery 2 (2023) 339 (doi:10.1039/D2DD00124A), compared the twin with
linear, cubic-spline and radial-basis-function (RBF) interpolation of the same coarse scans (SI).
The baselines here have the twin's shape, so a comparison is one line::

    twin = DigitalTwin.fit(data, ["T", "H"], "M")
    line = LinearInterpolator.fit(data, ["T", "H"], "M")
    grid = make_grid(T=np.linspace(10, 60, 501), H=np.linspace(0, 5, 51))
    difference = twin.predict(grid)["M"] - line.predict(grid)["M"]

``predict`` returns what :meth:`~bluesky_digitwin.twin.DigitalTwin.predict` returns: ``<target>``,
``<target>_std`` and ``outside_range`` with the feature coordinates and units, marked
``data_origin="simulated"``, plus a ``method`` attribute. A classical interpolator has no
uncertainty: ``<target>_std`` is all zeros.

Scan data is a set of 1-D sweeps along a fast axis (e.g. T) at a few values of a slow axis
(e.g. H); the fast-axis values may differ from sweep to sweep (a ragged scan, not a grid).
:class:`LinearInterpolator` and :class:`SplineInterpolator` interpolate as the paper's SI did for
M(T, H): first each sweep along the fast axis onto the query's fast-axis values, then across the
sweeps along the slow axis. :class:`RBFBaseline` treats the points as scattered data.

Outside the learned range
-------------------------
A query outside the (min, max) range of any feature is flagged ``outside_range`` and warned about
with :class:`~bluesky_digitwin.prediction.OutsideRangeWarning`, exactly as the twin does. The linear
and spline baselines return NaN there (they do not extrapolate); the RBF baseline, like the twin,
returns its extrapolation. Inside the range, at the ragged edges of a scan a sweep may not reach
the query's fast-axis value: a linear sweep then holds its end value, a spline sweep extends its
end polynomial.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import xarray as xr
from scipy.interpolate import CubicSpline, RBFInterpolator

from bluesky_digitwin.data import (
    DigitwinInputError,
    TableLike,
    TrainingData,
    prepare_training_data,
)
from bluesky_digitwin.prediction import Points, prediction_dataset
from bluesky_digitwin.scan_lines import line_labels, rounding_atol

__all__ = [
    "RBF_KERNELS",
    "LinearInterpolator",
    "RBFBaseline",
    "SplineInterpolator",
    "prediction_dataset",
    "rbf_kfold_rmse",
]


#: Kernels of :class:`scipy.interpolate.RBFInterpolator` that the RBF search chooses from.
RBF_KERNELS = (
    "thin_plate_spline",
    "cubic",
    "quintic",
    "linear",
    "multiquadric",
    "inverse_multiquadric",
    "inverse_quadratic",
    "gaussian",
)
# For these kernels epsilon only rescales the smoothing (scipy docs), so it is fixed at 1.
_SCALE_FREE_KERNELS = frozenset({"thin_plate_spline", "cubic", "quintic", "linear"})

#: Above this many points the RBF uses local neighbourhoods (``neighbors="auto"``): a global RBF
#: solves a dense n-by-n system, out of reach for ARPES maps of ~30 000 points.
LARGE_DATA = 5000
#: Neighbourhood size used for large data.
LARGE_DATA_NEIGHBORS = 50

_S = TypeVar("_S", bound="_SweepInterpolator")

_NO_UNCERTAINTY = "none: a classical interpolator has no uncertainty (zeros)"


# -- what all baselines share ------------------------------------------------------------------


class _Baseline:
    """Names, units, ranges and ``predict`` of a fitted baseline; subclasses add ``_values``."""

    method: ClassVar[str]

    def __init__(self, data: TrainingData, params: dict[str, Any]):
        self.features: tuple[str, ...] = data.features
        self.target: str = data.target
        self.units: dict[str, str] = dict(data.units)
        self.ranges: dict[str, tuple[float, float]] = data.ranges
        self.n_points: int = data.n_points
        self.params: dict[str, Any] = params

    def predict(self, points: Points, *, warn: bool = True) -> xr.Dataset:
        """Interpolate the measurement at ``points``; the same Dataset as ``DigitalTwin.predict``.

        Parameters
        ----------
        points
            The coordinates: a dict of equal-length arrays, a pandas DataFrame, or an xarray
            Dataset (e.g. :func:`~bluesky_digitwin.data.make_grid`, which gives a grid).
        warn
            Warn (:class:`~bluesky_digitwin.prediction.OutsideRangeWarning`) when a point lies
            outside the learned range.

        Returns
        -------
        xarray.Dataset
            ``<target>`` (interpolated values), ``<target>_std`` (zeros: no uncertainty) and
            ``outside_range`` (bool), with the feature coordinates; units in ``attrs``,
            ``data_origin="simulated"`` and ``method`` (e.g. ``"linear"``).
        """
        return prediction_dataset(
            points,
            self.features,
            self.target,
            self.units,
            self.ranges,
            lambda x, outside: (self._values(x, outside), np.zeros(len(x))),
            warn=warn,
            attrs={"method": self.method},
            std_long_name=_NO_UNCERTAINTY,
            what=f"the {self.method} baseline",
        )

    def _values(self, x: np.ndarray, outside: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return (
            f"<{type(self).__name__} {self.target}({', '.join(self.features)}) "
            f"from {self.n_points} points; {params}>"
        )


def _prepare(
    data: TableLike, features: Sequence[str], target: str, units: Mapping[str, str] | None
) -> TrainingData:
    """The twin's data path: the same checks, errors and warnings."""
    # As in DigitalTwin.fit: data warnings point at the user's call of fit.
    prepared = prepare_training_data(data, features, target, stacklevel=3)
    if units:
        prepared.units.update({k: str(v) for k, v in units.items() if k in prepared.units})
    return prepared


# -- linear and cubic spline: along each sweep, then across sweeps -----------------------------


class _SweepInterpolator(_Baseline):
    """Interpolation of a scan sweep by sweep: along the fast axis, then across the slow one."""

    def __init__(
        self,
        data: TrainingData,
        params: dict[str, Any],
        fast_index: int,
        slow_index: int | None,
        slow_values: np.ndarray,
        curves: list[Callable[[np.ndarray], np.ndarray]],
    ):
        super().__init__(data, params)
        self._fast_index = fast_index
        self._slow_index = slow_index
        self._slow_values = slow_values
        self._curves = curves

    @classmethod
    def fit(
        cls: type[_S],
        data: TableLike,
        features: Sequence[str],
        target: str,
        *,
        slow_axis: str | None = None,
        slow_atol: float | None = None,
        units: Mapping[str, str] | None = None,
    ) -> _S:
        """Split the scan into sweeps and prepare their interpolation.

        Parameters
        ----------
        data
            An xarray Dataset, a pandas DataFrame or the path of a CSV or netCDF file, as for
            :meth:`DigitalTwin.fit <bluesky_digitwin.twin.DigitalTwin.fit>`.
        features
            One or two column names. With one, a plain 1-D interpolation along it.
        target
            The measured quantity.
        slow_axis
            With two features, the one the sweeps are stepped along (e.g. ``"H"``); by default
            the feature with the fewest distinct values (the last one listed on a tie).
        slow_atol
            Slow-axis values at most this far apart (neighbours when sorted) belong to one
            sweep, whose slow-axis value is then their median. Use it when the slow axis is a
            jittering readback. By default only values equal up to rounding are merged.
        units
            Units by name, for columns whose data carries no ``units`` attribute.

        Raises
        ------
        DigitwinInputError
            The twin's data errors; more than two features; an unknown ``slow_axis``; fewer
            than two sweeps; a sweep with fewer than two distinct fast-axis values.

        Notes
        -----
        Within a sweep, points at the same fast-axis value are averaged. Training points are
        reproduced exactly unless they were averaged or merged into a sweep by ``slow_atol``.
        """
        prepared = _prepare(data, features, target, units)
        names = prepared.features
        if len(names) > 2:
            raise DigitwinInputError(
                f"the {cls.method} baseline interpolates 1 or 2 features, got {len(names)} "
                f"({', '.join(names)}); use RBFBaseline for more"
            )
        if slow_axis is not None and slow_axis not in names:
            raise DigitwinInputError(
                f"slow_axis {slow_axis!r} is not one of the features ({', '.join(names)})"
            )
        if slow_atol is not None and not slow_atol >= 0:
            raise DigitwinInputError(f"slow_atol must be >= 0, got {slow_atol}")
        x, y = prepared.x, prepared.y
        if len(names) == 1:
            if slow_axis is not None:
                raise DigitwinInputError(
                    f"slow_axis {slow_axis!r} given, but with one feature there are no sweeps"
                )
            curve = cls._sweep_curve(names[0], x[:, 0], y, label="the data")
            params = {"fast_axis": names[0], "slow_axis": None, "n_sweeps": 1}
            return cls(prepared, params, 0, None, np.array([np.nan]), [curve])

        if slow_axis is None:
            counts = [line_labels(x[:, i])[1] for i in range(2)]
            # Fewest distinct values; "<=" picks the later feature on a tie, as in ("T", "H").
            slow = 1 if counts[1] <= counts[0] else 0
        else:
            slow = names.index(slow_axis)
        fast = 1 - slow
        slow_name, fast_name = names[slow], names[fast]
        atol = rounding_atol(x[:, slow]) if slow_atol is None else float(slow_atol)
        labels, n_sweeps = line_labels(x[:, slow], atol)
        if n_sweeps < 2:
            raise DigitwinInputError(
                f"the {cls.method} baseline interpolates across sweeps along the slow axis "
                f"{slow_name!r}, which needs at least 2 sweeps; the data has {n_sweeps} "
                f"(slow_atol={atol:g} merged them?)"
            )
        slow_values = np.empty(n_sweeps)
        curves = []
        for k in range(n_sweeps):
            members = labels == k
            # The median is exact for equal values and robust to a jittering readback.
            slow_values[k] = np.median(x[members, slow])
            curves.append(
                cls._sweep_curve(
                    fast_name,
                    x[members, fast],
                    y[members],
                    label=f"the sweep at {slow_name} = {slow_values[k]:g}",
                )
            )
        params = {"fast_axis": fast_name, "slow_axis": slow_name, "n_sweeps": n_sweeps}
        return cls(prepared, params, fast, slow, slow_values, curves)

    @classmethod
    def _sweep_curve(
        cls, fast_name: str, t: np.ndarray, y: np.ndarray, *, label: str
    ) -> Callable[[np.ndarray], np.ndarray]:
        # Sorted, with repeated fast-axis values averaged: interpolation needs increasing x.
        t_unique, inverse = np.unique(t, return_inverse=True)
        if len(t_unique) < 2:
            raise DigitwinInputError(
                f"{label} has {len(t_unique)} distinct {fast_name!r} value(s); interpolating "
                f"along {fast_name!r} needs at least 2 (drop that sweep, or merge jittering "
                "slow-axis values with slow_atol)"
            )
        y_mean = np.bincount(inverse, weights=y) / np.bincount(inverse)
        return cls._curve(t_unique, y_mean)

    @staticmethod
    def _curve(t: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        raise NotImplementedError

    @staticmethod
    def _across(
        slow_values: np.ndarray, on_sweeps: np.ndarray, column: np.ndarray, s: np.ndarray
    ) -> np.ndarray:
        raise NotImplementedError

    @property
    def sweeps(self) -> np.ndarray:
        """The slow-axis value of every sweep, ascending (NaN for a 1-feature fit)."""
        return self._slow_values.copy()

    def _values(self, x: np.ndarray, outside: np.ndarray) -> np.ndarray:
        out = np.full(len(x), np.nan)
        use = ~outside & np.isfinite(x).all(axis=1)
        if not use.any():
            return out
        # Each sweep is evaluated once per distinct fast-axis value (a grid repeats them), which
        # bounds the work and memory at n_sweeps x n_distinct.
        fast_values, column = np.unique(x[use, self._fast_index], return_inverse=True)
        on_sweeps = np.stack([curve(fast_values) for curve in self._curves])
        if self._slow_index is None:
            out[use] = on_sweeps[0, column]
        else:
            s = x[use, self._slow_index]
            out[use] = self._across(self._slow_values, on_sweeps, column, s)
        return out


def _interval(knots: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Index j of the knot interval [knots[j], knots[j+1]] holding each s (ends included)."""
    return np.clip(np.searchsorted(knots, s, side="right") - 1, 0, len(knots) - 2)


class LinearInterpolator(_SweepInterpolator):
    """Linear interpolation along each sweep, then linearly across the sweeps.

    Make one with :meth:`fit`; ask it with :meth:`predict`, as a
    :class:`~bluesky_digitwin.twin.DigitalTwin`. NaN outside the learned range.

    Attributes
    ----------
    features, target, units, ranges
        As for the twin.
    params : dict
        ``fast_axis``, ``slow_axis`` (None with one feature) and ``n_sweeps``.
    sweeps : ndarray
        The slow-axis value of every sweep.
    """

    method = "linear"

    @staticmethod
    def _curve(t: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        return lambda q: np.interp(q, t, y)

    @staticmethod
    def _across(
        slow_values: np.ndarray, on_sweeps: np.ndarray, column: np.ndarray, s: np.ndarray
    ) -> np.ndarray:
        j = _interval(slow_values, s)
        w = (s - slow_values[j]) / (slow_values[j + 1] - slow_values[j])
        return (1 - w) * on_sweeps[j, column] + w * on_sweeps[j + 1, column]


class SplineInterpolator(_SweepInterpolator):
    """Cubic-spline interpolation along each sweep, then by cubic spline across the sweeps.

    Both splines are :class:`scipy.interpolate.CubicSpline` with its default not-a-knot ends.
    With two sweeps (or two points in a sweep) scipy's spline is the straight line through
    them, with three a parabola: a cubic across the sweeps needs four or more. NaN outside the
    learned range.

    Attributes
    ----------
    features, target, units, ranges
        As for the twin.
    params : dict
        ``fast_axis``, ``slow_axis`` (None with one feature) and ``n_sweeps``.
    sweeps : ndarray
        The slow-axis value of every sweep.
    """

    method = "cubic_spline"

    @staticmethod
    def _curve(t: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        return CubicSpline(t, y)

    @staticmethod
    def _across(
        slow_values: np.ndarray, on_sweeps: np.ndarray, column: np.ndarray, s: np.ndarray
    ) -> np.ndarray:
        # One spline across the sweeps per distinct fast-axis value, all built at once; each
        # query then evaluates the cubic piece of its own column and interval.
        c = CubicSpline(slow_values, on_sweeps, axis=0).c  # (4, n_sweeps - 1, n_columns)
        j = _interval(slow_values, s)
        dx = s - slow_values[j]
        a, b, c1, d = (c[k, j, column] for k in range(4))
        return ((a * dx + b) * dx + c1) * dx + d


# -- radial basis functions ---------------------------------------------------------------------


def _resolve_neighbors(neighbors: int | Literal["auto"] | None, n_points: int) -> int | None:
    if neighbors == "auto":
        return LARGE_DATA_NEIGHBORS if n_points > LARGE_DATA else None
    if neighbors is not None and (not isinstance(neighbors, (int, np.integer)) or neighbors < 1):
        raise DigitwinInputError(
            f"neighbors must be a positive integer, None or 'auto', got {neighbors!r}"
        )
    return None if neighbors is None else int(neighbors)


def _folds(n_points: int, n_folds: int, seed: int | None) -> list[np.ndarray]:
    """Shuffled, near-equal k-fold split of the point indices (repeatable with a seed)."""
    if not isinstance(n_folds, (int, np.integer)) or not 2 <= n_folds <= n_points:
        raise DigitwinInputError(
            f"n_folds must be an integer from 2 to the number of points ({n_points}), "
            f"got {n_folds!r}"
        )
    return np.array_split(np.random.default_rng(seed).permutation(n_points), int(n_folds))


def _check_rbf_params(kernel: str, epsilon: float | None, smoothing: float) -> float:
    """Validate fixed RBF settings; return the epsilon scipy gets."""
    if kernel not in RBF_KERNELS:
        raise DigitwinInputError(f"unknown RBF kernel {kernel!r}; choose from {RBF_KERNELS}")
    if not smoothing >= 0:
        raise DigitwinInputError(f"smoothing must be >= 0, got {smoothing}")
    if kernel in _SCALE_FREE_KERNELS:
        return 1.0 if epsilon is None else float(epsilon)
    if epsilon is None:
        raise DigitwinInputError(
            f"the {kernel!r} kernel needs an epsilon (its inverse length scale, in units of "
            "each feature's standard deviation); give one or tune it"
        )
    if not epsilon > 0:
        raise DigitwinInputError(f"epsilon must be > 0, got {epsilon}")
    return float(epsilon)


def _kfold_rmse(
    xs: np.ndarray,
    y: np.ndarray,
    folds: list[np.ndarray],
    kernel: str,
    epsilon: float,
    smoothing: float,
    neighbors: int | None,
) -> float:
    """Root-mean-square error over held-out folds (inf when a fold cannot be solved)."""
    squared = 0.0
    for held_out in folds:
        train = np.ones(len(y), dtype=bool)
        train[held_out] = False
        try:
            rbf = RBFInterpolator(
                xs[train],
                y[train],
                kernel=kernel,
                epsilon=epsilon,
                smoothing=smoothing,
                neighbors=neighbors,
            )
            predicted = rbf(xs[held_out])
        except (np.linalg.LinAlgError, ValueError):
            # A singular or too-small system: this setting is unusable here, not an error.
            return math.inf
        squared += float(np.sum((predicted - y[held_out]) ** 2))
    rmse = math.sqrt(squared / len(y))
    return rmse if math.isfinite(rmse) else math.inf


class _Standardise:
    """Each feature to zero mean and unit standard deviation, so one epsilon fits all axes."""

    def __init__(self, x: np.ndarray):
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std


def rbf_kfold_rmse(
    data: TableLike,
    features: Sequence[str],
    target: str,
    *,
    kernel: str = "thin_plate_spline",
    epsilon: float | None = None,
    smoothing: float = 0.0,
    neighbors: int | Literal["auto"] | None = "auto",
    n_folds: int = 5,
    seed: int | None = None,
) -> float:
    """K-fold cross-validated RMSE of an RBF interpolation with fixed settings.

    Uses the same standardisation and, for the same ``seed``, the same folds as
    :meth:`RBFBaseline.fit`, so its ``cv_rmse`` is directly comparable.

    Returns
    -------
    float
        RMSE on the held-out points, in the target's units (inf if a fold could not be solved).
    """
    prepared = _prepare(data, features, target, None)
    epsilon = _check_rbf_params(kernel, epsilon, smoothing)
    folds = _folds(prepared.n_points, n_folds, seed)
    xs = _Standardise(prepared.x)(prepared.x)
    neighbors = _resolve_neighbors(neighbors, prepared.n_points)
    return _kfold_rmse(xs, prepared.y, folds, kernel, epsilon, smoothing, neighbors)


class RBFBaseline(_Baseline):
    """Radial-basis-function interpolation (:class:`scipy.interpolate.RBFInterpolator`).

    The features are standardised (zero mean, unit standard deviation) so that one length
    scale fits all axes; ``epsilon`` is the inverse length scale in those units. As in the
    paper's SI the kernel, epsilon and smoothing are chosen by Optuna (TPE) on k-fold
    cross-validation, or fixed. Outside the learned range the values are extrapolated and
    flagged, as the twin's are.

    Attributes
    ----------
    features, target, units, ranges
        As for the twin.
    params : dict
        The settings used: ``kernel``, ``epsilon``, ``smoothing``, ``neighbors``.
    cv_rmse : float or None
        The k-fold RMSE of the chosen settings (None when not tuned).
    """

    method = "rbf"

    def __init__(
        self,
        data: TrainingData,
        params: dict[str, Any],
        cv_rmse: float | None,
    ):
        super().__init__(data, params)
        self.cv_rmse = cv_rmse
        self._scale = _Standardise(data.x)
        self._rbf = RBFInterpolator(self._scale(data.x), data.y, **params)

    @classmethod
    def fit(
        cls,
        data: TableLike,
        features: Sequence[str],
        target: str,
        *,
        kernel: str | None = None,
        epsilon: float | None = None,
        smoothing: float | None = None,
        tune: bool = True,
        n_trials: int = 30,
        n_folds: int = 5,
        seed: int | None = None,
        neighbors: int | Literal["auto"] | None = "auto",
        kernels: Sequence[str] = RBF_KERNELS,
        epsilon_range: tuple[float, float] = (1e-2, 1e2),
        smoothing_range: tuple[float, float] = (1e-10, 1.0),
        sampler: Any = None,
        units: Mapping[str, str] | None = None,
    ) -> RBFBaseline:
        """Fit an RBF interpolation, tuning what is not fixed.

        Parameters
        ----------
        data, features, target, units
            As for :meth:`DigitalTwin.fit <bluesky_digitwin.twin.DigitalTwin.fit>`.
        kernel, epsilon, smoothing
            Fix these settings. Not given: tuned (``tune=True``), or the defaults
            thin-plate spline, epsilon 1, smoothing 0 (``tune=False``). Epsilon only matters
            for kernels other than ``linear``, ``thin_plate_spline``, ``cubic``, ``quintic``.
        tune
            Search the settings not fixed by Optuna on k-fold cross-validated RMSE.
        n_trials
            Trials of the search. The first tries a plain thin-plate spline when allowed.
        n_folds
            Folds of the cross-validation (points shuffled with ``seed``).
        seed
            Makes the folds and the TPE sampler repeatable.
        neighbors
            Local RBF over this many nearest points; ``"auto"``: all points up to
            ``LARGE_DATA`` points, else ``LARGE_DATA_NEIGHBORS``; None: always all points.
        kernels
            The kernels searched.
        epsilon_range, smoothing_range
            Log-uniform ranges searched; the small end of the smoothing range stands for 0.
        sampler
            An Optuna sampler instead of ``TPESampler(seed=seed)``.

        Raises
        ------
        DigitwinInputError
            The twin's data errors; an unknown kernel; bad ranges, folds or trials; no setting
            that could be solved.
        """
        prepared = _prepare(data, features, target, units)
        neighbors = _resolve_neighbors(neighbors, prepared.n_points)
        if not tune:
            kernel = kernel or "thin_plate_spline"
            smoothing = 0.0 if smoothing is None else float(smoothing)
            epsilon = _check_rbf_params(kernel, epsilon, smoothing)
            params = {
                "kernel": kernel,
                "epsilon": epsilon,
                "smoothing": smoothing,
                "neighbors": neighbors,
            }
            return cls(prepared, params, None)
        params, cv_rmse = _tune_rbf(
            prepared,
            kernel=kernel,
            epsilon=epsilon,
            smoothing=smoothing,
            n_trials=n_trials,
            n_folds=n_folds,
            seed=seed,
            neighbors=neighbors,
            kernels=kernels,
            epsilon_range=epsilon_range,
            smoothing_range=smoothing_range,
            sampler=sampler,
        )
        return cls(prepared, params, cv_rmse)

    def _values(self, x: np.ndarray, outside: np.ndarray) -> np.ndarray:
        out = np.full(len(x), np.nan)
        use = np.isfinite(x).all(axis=1)
        if use.any():
            out[use] = self._rbf(self._scale(x[use]))
        return out


def _tune_rbf(
    data: TrainingData,
    *,
    kernel: str | None,
    epsilon: float | None,
    smoothing: float | None,
    n_trials: int,
    n_folds: int,
    seed: int | None,
    neighbors: int | None,
    kernels: Sequence[str],
    epsilon_range: tuple[float, float],
    smoothing_range: tuple[float, float],
    sampler: Any,
) -> tuple[dict[str, Any], float]:
    """Choose the RBF settings not fixed by Optuna on k-fold RMSE; return them and the RMSE."""
    import optuna

    if not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise DigitwinInputError(f"n_trials must be a positive integer, got {n_trials!r}")
    kernels = [kernel] if kernel is not None else list(kernels)
    unknown = [k for k in kernels if k not in RBF_KERNELS]
    if unknown or not kernels:
        raise DigitwinInputError(
            f"unknown RBF kernel(s) {unknown or kernels}; choose from {RBF_KERNELS}"
        )
    for name, (lo, hi) in {
        "epsilon_range": epsilon_range,
        "smoothing_range": smoothing_range,
    }.items():
        if not 0 < lo <= hi:
            raise DigitwinInputError(f"{name} must be 0 < low <= high, got ({lo}, {hi})")
    if epsilon is not None and not epsilon > 0:
        raise DigitwinInputError(f"epsilon must be > 0, got {epsilon}")
    if smoothing is not None and not smoothing >= 0:
        raise DigitwinInputError(f"smoothing must be >= 0, got {smoothing}")
    folds = _folds(data.n_points, n_folds, seed)
    xs = _Standardise(data.x)(data.x)

    def settings(trial: optuna.Trial) -> tuple[str, float, float]:
        k = trial.suggest_categorical("kernel", kernels)
        if k in _SCALE_FREE_KERNELS:
            eps = 1.0 if epsilon is None else float(epsilon)
        elif epsilon is None:
            eps = trial.suggest_float("epsilon", *epsilon_range, log=True)
        else:
            eps = float(epsilon)
        s = smoothing
        if s is None:
            s = trial.suggest_float("smoothing", *smoothing_range, log=True)
        return k, eps, float(s)

    def objective(trial: optuna.Trial) -> float:
        k, eps, s = settings(trial)
        return _kfold_rmse(xs, data.y, folds, k, eps, s, neighbors)

    # Optuna logs every trial at INFO; keep a baseline fit quiet, then restore the user's level.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            direction="minimize", sampler=sampler or optuna.samplers.TPESampler(seed=seed)
        )
        if "thin_plate_spline" in kernels:
            # Start from the plain thin-plate spline, so tuning never ends worse than it.
            start: dict[str, Any] = {"kernel": "thin_plate_spline"}
            if smoothing is None:
                start["smoothing"] = smoothing_range[0]
            study.enqueue_trial(start)
        study.optimize(objective, n_trials=int(n_trials))
    finally:
        optuna.logging.set_verbosity(verbosity)
    best = study.best_trial
    if not math.isfinite(best.value):
        raise DigitwinInputError(
            f"no RBF setting out of {n_trials} trials could be solved on this data; "
            "widen the ranges or fix the kernel"
        )
    k, eps, s = settings(optuna.trial.FixedTrial(best.params))
    params = {"kernel": k, "epsilon": eps, "smoothing": s, "neighbors": neighbors}
    return params, float(best.value)
