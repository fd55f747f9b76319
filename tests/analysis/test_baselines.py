"""Tests for the classical baselines (linear, cubic spline, RBF) and their twin-shaped output."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.interpolate import CubicSpline

from bluesky_digitwin.analysis import baselines
from bluesky_digitwin.analysis.baselines import (
    RBF_KERNELS,
    LinearInterpolator,
    RBFBaseline,
    SplineInterpolator,
    rbf_kfold_rmse,
)
from bluesky_digitwin.data import DataWarning, DigitwinInputError, make_grid
from bluesky_digitwin.twin import OutsideRangeWarning

# A ragged M(T, H) scan: T sweeps at a few uneven fields, each sweep with its own start, end and
# jittered steps, so no two sweeps share their T values.
FIELDS = np.array([0.0, 0.7, 1.5, 2.0, 3.0, 4.0])
UNITS = {"T": "K", "H": "T", "M": "emu/g"}
SWEEP_CLASSES = [LinearInterpolator, SplineInterpolator]
ALL_CLASSES = [LinearInterpolator, SplineInterpolator, RBFBaseline]
# Settings that make RBFBaseline.fit fast in tests; other classes take no extra arguments.
FAST = {RBFBaseline: {"tune": False}}


def model(t, h):
    """Smooth, curved along both axes (so a wrong axis or a wrong sweep pair shows)."""
    return np.sin(t / 6) * np.exp(-h / 2) + 0.1 * h


def ragged_scan(seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    t_all, h_all = [], []
    for h in FIELDS:
        start, stop = 10 + rng.uniform(0, 0.4), 40 - rng.uniform(0, 0.4)
        t = np.arange(start, stop, 0.5)
        t = np.sort(t + rng.uniform(-0.1, 0.1, t.size))
        t_all.append(t)
        h_all.append(np.full(t.size, h))
    t, h = np.concatenate(t_all), np.concatenate(h_all)
    return xr.Dataset(
        {
            "T": ("point", t, {"units": UNITS["T"]}),
            "H": ("point", h, {"units": UNITS["H"]}),
            "M": ("point", model(t, h), {"units": UNITS["M"]}),
        }
    )


@pytest.fixture(scope="module")
def scan() -> xr.Dataset:
    return ragged_scan()


@pytest.fixture(scope="module")
def queries() -> dict[str, np.ndarray]:
    """Points between the fields, at T values away from the ragged sweep ends."""
    rng = np.random.default_rng(1)
    return {"T": rng.uniform(12, 38, 200), "H": rng.uniform(0, 4, 200)}


@pytest.fixture(scope="module")
def tuned_rbf(scan) -> RBFBaseline:
    return RBFBaseline.fit(scan, ["T", "H"], "M", n_trials=6, n_folds=3, seed=0)


def fit(cls, data, features=("T", "H"), target="M", **kwargs):
    return cls.fit(data, list(features), target, **{**FAST.get(cls, {}), **kwargs})


# -- accuracy ------------------------------------------------------------------------------------


def test_linear_is_sweepwise_linear_interpolation(scan, queries):
    pred = LinearInterpolator.fit(scan, ["T", "H"], "M").predict(queries)["M"].values
    t, h = queries["T"], queries["H"]
    # By hand: the two bracketing fields, the model along T, a straight line across H.
    j = np.clip(np.searchsorted(FIELDS, h, side="right") - 1, 0, len(FIELDS) - 2)
    w = (h - FIELDS[j]) / (FIELDS[j + 1] - FIELDS[j])
    expected = (1 - w) * model(t, FIELDS[j]) + w * model(t, FIELDS[j + 1])
    # Linear along T with steps <= 0.7 K errs by < 0.7^2/8 * max|d2M/dT2| ~ 2e-3; using the
    # wrong pair of fields or the wrong axis errs by ~0.1.
    np.testing.assert_allclose(pred, expected, atol=3e-3)
    np.testing.assert_allclose(pred, model(t, h), atol=0.03)


def test_spline_is_sweepwise_cubic_spline(scan, queries):
    pred = SplineInterpolator.fit(scan, ["T", "H"], "M").predict(queries)["M"].values
    t, h = queries["T"], queries["H"]
    on_fields = model(t[None, :], FIELDS[:, None])  # (fields, queries)
    expected = np.diagonal(CubicSpline(FIELDS, on_fields, axis=0)(h))
    # A spline along T with ~0.5 K steps is exact to ~1e-6; a wrong spline piece is not.
    np.testing.assert_allclose(pred, expected, atol=1e-4)
    np.testing.assert_allclose(pred, model(t, h), atol=5e-3)


def test_rbf_reproduces_the_model(tuned_rbf, queries):
    pred = tuned_rbf.predict(queries)["M"].values
    np.testing.assert_allclose(pred, model(queries["T"], queries["H"]), atol=0.03)


@pytest.mark.parametrize("cls", SWEEP_CLASSES)
def test_sweep_interpolators_pass_through_the_data(cls, scan):
    points = {"T": scan["T"].values, "H": scan["H"].values}
    pred = cls.fit(scan, ["T", "H"], "M").predict(points, warn=False)["M"].values
    np.testing.assert_allclose(pred, scan["M"].values, rtol=1e-12, atol=1e-12)


def test_thin_plate_rbf_passes_through_the_data(scan):
    rbf = RBFBaseline.fit(scan, ["T", "H"], "M", tune=False)
    assert rbf.params == {
        "kernel": "thin_plate_spline",
        "epsilon": 1.0,
        "smoothing": 0.0,
        "neighbors": None,
    }
    assert rbf.cv_rmse is None
    pred = rbf.predict({"T": scan["T"].values, "H": scan["H"].values})["M"].values
    np.testing.assert_allclose(pred, scan["M"].values, atol=1e-6)


@pytest.mark.parametrize("cls", SWEEP_CLASSES)
def test_slow_axis_is_the_one_with_fewest_values(cls, scan, queries):
    first = cls.fit(scan, ["T", "H"], "M")
    swapped = cls.fit(scan, ["H", "T"], "M")
    assert first.params == {"fast_axis": "T", "slow_axis": "H", "n_sweeps": len(FIELDS)}
    assert swapped.params["slow_axis"] == "H"
    np.testing.assert_array_equal(first.sweeps, FIELDS)
    np.testing.assert_array_equal(
        first.predict(queries)["M"].values, swapped.predict(queries)["M"].values
    )


def test_repeated_fast_values_in_a_sweep_are_averaged():
    t = np.tile(np.linspace(0, 10, 6), 2)
    h = np.repeat([0.0, 1.0], 6)
    m = t + h
    m[0] += 1.0  # a repeat of (T=0, H=0) measured 1 higher: the sweep uses the mean
    frame = pd.DataFrame({"T": [*t, 0.0], "H": [*h, 0.0], "M": [*m, 0.0]})
    lin = LinearInterpolator.fit(frame, ["T", "H"], "M")
    assert lin.predict({"T": [0.0], "H": [0.0]})["M"].item() == pytest.approx(0.5)


# -- the twin's output layout --------------------------------------------------------------------


def assert_twin_layout(actual: xr.Dataset, expected: xr.Dataset, method: str) -> None:
    """Same variables, dims, coords and units as DigitalTwin.predict (std zeros, no NaN)."""
    assert set(actual.data_vars) == set(expected.data_vars)
    for name, var in expected.data_vars.items():
        assert actual[name].dims == var.dims, name
        assert actual[name].shape == var.shape, name
        assert actual[name].dtype.kind == var.dtype.kind, name
        assert actual[name].attrs.get("units") == var.attrs.get("units"), name
    xr.testing.assert_identical(
        xr.Dataset(coords=actual.coords), xr.Dataset(coords=expected.coords)
    )
    assert actual.attrs["data_origin"] == "simulated"
    assert actual.attrs["method"] == method
    np.testing.assert_array_equal(actual["M_std"].values, 0.0)
    assert np.isfinite(actual["M"].values).all()


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_grid_prediction_has_the_twin_layout(cls, scan):
    t, h = np.linspace(12, 38, 7), np.array([0.3, 1.1, 2.5])
    ds = fit(cls, scan).predict(make_grid(T=t, H=h))
    dims = ("T", "H")
    expected = xr.Dataset(
        {
            "M": (dims, np.zeros((7, 3)), {"units": "emu/g"}),
            "M_std": (dims, np.zeros((7, 3)), {"units": "emu/g"}),
            "outside_range": (dims, np.zeros((7, 3), dtype=bool)),
        },
        coords={"T": ("T", t, {"units": "K"}), "H": ("H", h, {"units": "T"})},
    )
    assert_twin_layout(ds, expected, cls.method)
    # Values laid out on (T, H), not transposed (that would err by ~0.5).
    np.testing.assert_allclose(ds["M"].values, model(t[:, None], h[None, :]), atol=0.05)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_point_prediction_has_the_twin_layout(cls, scan):
    t, h = np.array([12.0, 20.0, 25.0, 30.0, 38.0]), np.array([0.2, 0.9, 1.7, 2.6, 3.9])
    model_fit = fit(cls, scan)
    expected = xr.Dataset(
        {
            "M": ("point", np.zeros(5), {"units": "emu/g"}),
            "M_std": ("point", np.zeros(5), {"units": "emu/g"}),
            "outside_range": ("point", np.zeros(5, dtype=bool)),
        },
        coords={"T": ("point", t, {"units": "K"}), "H": ("point", h, {"units": "T"})},
    )
    for points in ({"T": t, "H": h}, pd.DataFrame({"H": h, "T": t})):
        ds = model_fit.predict(points)
        assert_twin_layout(ds, expected, cls.method)
        np.testing.assert_allclose(ds["M"].values, model(t, h), atol=0.05)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_names_units_and_ranges_like_the_twin(cls, scan):
    fitted = fit(cls, scan)
    assert fitted.features == ("T", "H")
    assert fitted.target == "M"
    assert fitted.units == UNITS
    assert fitted.ranges == {
        "T": (float(scan["T"].min()), float(scan["T"].max())),
        "H": (0.0, 4.0),
    }
    assert cls.__name__ in repr(fitted)


@pytest.mark.parametrize("cls", SWEEP_CLASSES)
def test_table_inputs_agree(cls, scan, tmp_path, queries):
    frame = scan.to_dataframe().reset_index(drop=True)
    csv = tmp_path / "scan.csv"
    frame.to_csv(csv, index=False)
    from_dataset = fit(cls, scan).predict(queries)["M"].values
    for data in (frame, csv, str(csv)):
        fitted = fit(cls, data, units=UNITS)
        assert fitted.units == UNITS
        np.testing.assert_allclose(fitted.predict(queries)["M"].values, from_dataset, rtol=1e-12)


# -- outside the learned range -------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_outside_range_is_flagged_and_warned(cls, scan):
    fitted = fit(cls, scan)
    points = {"T": [5.0, 20.0, 20.0], "H": [1.0, 1.0, 9.0]}
    with pytest.warns(OutsideRangeWarning, match="2 of 3 points") as record:
        ds = fitted.predict(points)
    assert record[0].filename == __file__  # points at the caller, as the twin's warning does
    np.testing.assert_array_equal(ds["outside_range"].values, [True, False, True])
    values = ds["M"].values
    assert np.isfinite(values[1])
    if cls is RBFBaseline:
        assert np.isfinite(values).all()  # extrapolated and flagged, as the twin does
    else:
        assert np.isnan(values[[0, 2]]).all()  # no extrapolation
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = fitted.predict(points, warn=False)
    np.testing.assert_array_equal(quiet["outside_range"].values, [True, False, True])


# -- RBF tuning ----------------------------------------------------------------------------------


def test_rbf_tuning_beats_a_bad_epsilon(scan, tuned_rbf):
    params = tuned_rbf.params
    assert params["kernel"] in RBF_KERNELS
    assert params["neighbors"] is None
    assert params["smoothing"] >= 0 and params["epsilon"] > 0
    # cv_rmse is the k-fold RMSE of the chosen settings on the same folds.
    same_folds = rbf_kfold_rmse(scan, ["T", "H"], "M", n_folds=3, seed=0, **params)
    assert tuned_rbf.cv_rmse == pytest.approx(same_folds)
    # A Gaussian this narrow is a spike at each point and misses everything between.
    bad = rbf_kfold_rmse(scan, ["T", "H"], "M", kernel="gaussian", epsilon=100.0, n_folds=3, seed=0)
    assert tuned_rbf.cv_rmse < bad / 10


def test_rbf_tuning_is_repeatable_and_keeps_fixed_settings(scan, tuned_rbf):
    again = RBFBaseline.fit(scan, ["T", "H"], "M", n_trials=6, n_folds=3, seed=0)
    assert again.params == tuned_rbf.params
    gauss = RBFBaseline.fit(scan, ["T", "H"], "M", kernel="gaussian", n_trials=3, n_folds=3, seed=0)
    assert gauss.params["kernel"] == "gaussian"
    assert 1e-2 <= gauss.params["epsilon"] <= 1e2
    assert np.isfinite(gauss.cv_rmse)


def test_rbf_uses_neighbors_for_large_data(scan, monkeypatch):
    monkeypatch.setattr(baselines, "LARGE_DATA", 100)
    local = RBFBaseline.fit(scan, ["T", "H"], "M", tune=False)
    assert local.params["neighbors"] == baselines.LARGE_DATA_NEIGHBORS
    pred = local.predict({"T": [20.0], "H": [1.0]})["M"].item()
    assert pred == pytest.approx(model(20.0, 1.0), abs=0.03)
    explicit = RBFBaseline.fit(scan, ["T", "H"], "M", tune=False, neighbors=None)
    assert explicit.params["neighbors"] is None


# -- one feature ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_one_feature(cls):
    rng = np.random.default_rng(2)
    t = np.sort(rng.uniform(10, 40, 60))
    frame = pd.DataFrame({"T": t, "M": np.sin(t / 6)})
    fitted = fit(cls, frame, features=["T"])
    grid_t = np.linspace(t[0], t[-1], 50)
    ds = fitted.predict(make_grid(T=grid_t))
    assert ds["M"].dims == ("T",)
    assert set(ds.data_vars) == {"M", "M_std", "outside_range"}
    assert not ds["outside_range"].any()
    if cls is LinearInterpolator:
        np.testing.assert_allclose(ds["M"].values, np.interp(grid_t, t, np.sin(t / 6)))
        assert fitted.params == {"fast_axis": "T", "slow_axis": None, "n_sweeps": 1}
    else:
        np.testing.assert_allclose(ds["M"].values, np.sin(grid_t / 6), atol=5e-3)


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_data_errors_are_the_twins(cls, scan):
    with pytest.raises(DigitwinInputError, match="unknown column"):
        fit(cls, scan, features=["T", "B"])
    with pytest.raises(DigitwinInputError, match="usable points"):
        fit(cls, scan.isel(point=slice(0, 5)))
    with pytest.raises(DigitwinInputError, match="lack 'H'"):
        fit(cls, scan).predict({"T": [20.0]})
    with_nan = scan.copy(deep=True)
    with_nan["M"][0] = np.nan
    with pytest.warns(DataWarning, match="dropped 1"):
        fit(cls, with_nan)


@pytest.mark.parametrize("cls", SWEEP_CLASSES)
def test_sweep_errors(cls, scan):
    three = scan.assign(B=scan["H"] * 2 + scan["T"])
    with pytest.raises(DigitwinInputError, match="1 or 2 features"):
        cls.fit(three, ["T", "H", "B"], "M")
    with pytest.raises(DigitwinInputError, match="slow_axis 'X'"):
        cls.fit(scan, ["T", "H"], "M", slow_axis="X")
    with pytest.raises(DigitwinInputError, match="no sweeps"):
        cls.fit(scan, ["T"], "M", slow_axis="T")
    # All fields merged into one sweep: nothing to interpolate across.
    with pytest.raises(DigitwinInputError, match=r"slow axis 'H'.* at least 2 sweeps.* has 1"):
        cls.fit(scan, ["T", "H"], "M", slow_atol=10.0)
    # Sweeps along ragged T hold one point each.
    with pytest.raises(DigitwinInputError, match=r"sweep at T = .* 1 distinct 'H'"):
        cls.fit(scan, ["T", "H"], "M", slow_axis="T")


def test_rbf_errors(scan):
    args = (scan, ["T", "H"], "M")
    with pytest.raises(DigitwinInputError, match="unknown RBF kernel"):
        RBFBaseline.fit(*args, kernel="sinc", tune=False)
    with pytest.raises(DigitwinInputError, match="unknown RBF kernel"):
        RBFBaseline.fit(*args, kernels=["sinc"], n_trials=1)
    with pytest.raises(DigitwinInputError, match="needs an epsilon"):
        RBFBaseline.fit(*args, kernel="gaussian", tune=False)
    with pytest.raises(DigitwinInputError, match="n_folds"):
        RBFBaseline.fit(*args, n_folds=1, n_trials=1)
    with pytest.raises(DigitwinInputError, match="n_trials"):
        RBFBaseline.fit(*args, n_trials=0)
    with pytest.raises(DigitwinInputError, match="neighbors"):
        RBFBaseline.fit(*args, neighbors=0, tune=False)
    with pytest.raises(DigitwinInputError, match="smoothing"):
        RBFBaseline.fit(*args, smoothing=-1.0, tune=False)
