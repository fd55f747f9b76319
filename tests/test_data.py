"""Reading and checking training tables: every bad input ends in a clear error or warning."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bluesky_digitwin.data import (
    DataWarning,
    DigitwinInputError,
    load_table,
    make_grid,
    points_to_arrays,
    prepare_training_data,
)


def test_dataframe_dataset_and_csv_give_the_same_arrays(table, csv_path):
    from_frame = prepare_training_data(table, ["x", "h"], "y")
    from_csv = prepare_training_data(csv_path, ["x", "h"], "y")
    from_dataset = prepare_training_data(xr.Dataset.from_dataframe(table), ["x", "h"], "y")
    np.testing.assert_allclose(from_frame.x, from_csv.x)
    np.testing.assert_allclose(from_frame.y, from_dataset.y)
    assert from_frame.sha256() == from_csv.sha256()
    assert from_frame.ranges["h"] == (0.0, 2.0)


def test_netcdf_and_gridded_dataset(tmp_path, table):
    grid = xr.Dataset(
        {"M": (("T", "H"), np.arange(12.0).reshape(4, 3))},
        coords={"T": [1.0, 2.0, 3.0, 4.0], "H": [0.0, 1.0, 2.0]},
    )
    grid["T"].attrs["units"] = "K"
    path = tmp_path / "grid.nc"
    grid.to_netcdf(path)
    data = prepare_training_data(load_table(path), ["T", "H"], "M", min_points=5)
    assert data.n_points == 12
    assert data.units["T"] == "K"


def test_nan_rows_are_dropped_with_a_count(table):
    table.loc[[3, 7], "y"] = np.nan
    table.loc[11, "x"] = np.inf
    with pytest.warns(DataWarning, match="dropped 3 of 125 rows"):
        data = prepare_training_data(table, ["x", "h"], "y")
    assert data.n_points == 122


def test_all_nan_target_is_an_error(table):
    table["y"] = np.nan
    with pytest.raises(DigitwinInputError, match="no finite value"):
        prepare_training_data(table, ["x", "h"], "y")


def test_unknown_columns_list_the_ones_that_exist(table):
    with pytest.raises(DigitwinInputError, match=r"unknown column\(s\) 'T'.*the data has: x, h, y"):
        prepare_training_data(table, ["T", "h"], "y")


def test_too_few_points(table):
    with pytest.raises(DigitwinInputError, match="only 4 usable points"):
        prepare_training_data(table.head(4), ["x", "h"], "y")


def test_constant_target(table):
    table["y"] = 1.5
    with pytest.raises(DigitwinInputError, match="constant"):
        prepare_training_data(table, ["x", "h"], "y")


def test_feature_with_one_value(table):
    table["h"] = 0.5
    with pytest.raises(DigitwinInputError, match="'h' has one value only"):
        prepare_training_data(table, ["x", "h"], "y")


@pytest.mark.parametrize("column", ["x", "y"])
def test_a_spread_beyond_float64_is_one_error_and_no_numpy_warning(table, column):
    # max - min overflows here: numpy's RuntimeWarning used to come before the error.
    table[column] = np.resize([-1.7e308, 1.7e308, 0.0], len(table))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DigitwinInputError, match=f"'{column}' is too large to compute with"):
            prepare_training_data(table, ["x", "h"], "y")


def test_non_numeric_column(table):
    table["h"] = table["h"].astype(object)
    table.loc[5, "h"] = "high"
    with pytest.raises(DigitwinInputError, match=r"'h' is not numeric.*'high'"):
        prepare_training_data(table, ["x", "h"], "y")


def test_missing_markers_in_text_columns_count_as_nan(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("x,y\n" + "".join(f"{i},{i * i}\n" for i in range(12)) + "12,NA\n13,\n")
    with pytest.warns(DataWarning, match="dropped 2"):
        data = prepare_training_data(path, ["x"], "y")
    assert data.n_points == 12


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "is empty"), ("x,y\n", "no data rows"), ("\n\n", "no columns")],
)
def test_empty_files(tmp_path, content, message):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(DigitwinInputError, match=message):
        load_table(path)


def test_missing_file_and_bad_types(tmp_path):
    with pytest.raises(DigitwinInputError, match="file not found"):
        load_table(tmp_path / "nope.csv")
    with pytest.raises(DigitwinInputError, match="cannot learn from a list"):
        prepare_training_data([1, 2, 3], ["x"], "y")


def test_target_cannot_be_a_feature(table):
    with pytest.raises(DigitwinInputError, match="both a feature and the target"):
        prepare_training_data(table, ["x", "y"], "y")


def test_make_grid_and_points():
    x, _, dims = points_to_arrays(make_grid(T=[1, 2, 3], H=[5, 6]), ["T", "H"])
    assert dims == ("T", "H")
    assert x.shape == (6, 2)
    np.testing.assert_array_equal(x[:2], [[1, 5], [1, 6]])

    x, _, dims = points_to_arrays(pd.DataFrame({"H": [5, 6], "T": [1, 2]}), ["T", "H"])
    assert dims == ("point",)
    np.testing.assert_array_equal(x, [[1, 5], [2, 6]])

    with pytest.raises(DigitwinInputError, match="lack 'H'"):
        points_to_arrays({"T": [1, 2]}, ["T", "H"])
    with pytest.raises(DigitwinInputError, match="do not line up"):
        points_to_arrays({"T": [1, 2], "H": [1, 2, 3]}, ["T", "H"])
    with pytest.raises(DigitwinInputError, match="non-empty"):
        make_grid(T=[])


# -- repeated column names ------------------------------------------------------------------------


def test_a_csv_with_a_repeated_column_is_refused_not_renamed(tmp_path, table):
    # pandas would read the second T as "T.1" and training would use the first, silently.
    path = tmp_path / "scans.csv"
    path.write_text("T,h, T,y\n" + "".join(f"{x},{h},{x + 1},{y}\n" for x, h, y in table.values))
    with pytest.raises(DigitwinInputError, match=r"2 columns named 'T' \(columns 1, 3\); rename"):
        prepare_training_data(path, ["T", "h"], "y")


def test_a_column_really_named_like_a_pandas_rename_is_kept(tmp_path):
    path = tmp_path / "scans.csv"
    path.write_text("T,T.1,y\n" + "".join(f"{i},{2 * i},{i * i}\n" for i in range(12)))
    data = prepare_training_data(path, ["T", "T.1"], "y")
    np.testing.assert_array_equal(data.x[:, 1], 2 * np.arange(12.0))


def classic_netcdf_with_a_repeated_variable(path) -> None:
    """A netCDF-3 file declaring two variables "T" (the format's readers keep one silently)."""
    points = np.arange(12.0)
    xr.Dataset(
        {"T": ("point", points), "X": ("point", points + 100), "y": ("point", points**2)}
    ).to_netcdf(path, format="NETCDF3_CLASSIC")
    # Rename "X" to "T" in the header: a name is its length (4 bytes) and its padded bytes.
    raw = path.read_bytes()
    assert raw.count(b"\0\0\0\x01X\0\0\0") == 1
    path.write_bytes(raw.replace(b"\0\0\0\x01X\0\0\0", b"\0\0\0\x01T\0\0\0"))
    with xr.open_dataset(path) as opened:  # what xarray alone makes of it: one T
        assert list(opened.data_vars) == ["T", "y"]


def test_a_netcdf_with_a_repeated_variable_is_refused(tmp_path):
    path = tmp_path / "scans.nc"
    classic_netcdf_with_a_repeated_variable(path)
    with pytest.raises(DigitwinInputError, match=r"2 variables named 'T' \(variables 1, 2\)"):
        load_table(path)


def digitwin_command() -> str:
    """The installed ``digitwin`` command (``python -m`` cannot spawn search workers)."""
    found = shutil.which("digitwin")
    assert found, "the package is not installed (pip install -e .)"
    return found


def test_a_prediction_grid_with_a_repeated_column_is_refused_by_the_cli(tmp_path, table):
    import subprocess

    from digitwin_testing import subprocess_env, two_network_fit

    from bluesky_digitwin import DigitalTwin

    DigitalTwin.fit(table, features=["x", "h"], target="y", **two_network_fit()).save(
        tmp_path / "twin"
    )
    grid = tmp_path / "grid.csv"
    grid.write_text("x,h,x\n0.1,0.5,0.9\n0.2,1.0,0.8\n")
    done = subprocess.run(
        [digitwin_command(), "predict", str(tmp_path / "twin"),
         str(grid), "--out", str(tmp_path / "pred.csv")],
        capture_output=True, text=True, timeout=300, env=subprocess_env(),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"digitwin: error: {grid} has 2 columns named 'x' (columns 1, 3); rename them so "
        "that each column has a name of its own"
    ]
    assert not (tmp_path / "pred.csv").exists()


# -- each message once ------------------------------------------------------------------------


def test_a_missing_file_is_one_message_that_says_check_the_path_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DigitwinInputError) as raised:
        load_table("nowhere.csv")
    assert str(raised.value) == (
        f"file not found: nowhere.csv; check the path (relative paths start at {tmp_path})"
    )


def test_data_warnings_show_every_time_from_the_caller_and_obey_its_filters(table):
    import warnings

    table.loc[[3, 7], "y"] = np.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own: once per place, unless shown every time
        for _ in range(2):
            prepare_training_data(table, ["x", "h"], "y")
    assert [str(w.message) for w in caught] == [
        "dropped 2 of 125 rows with NaN or infinite values"
    ] * 2
    assert {w.filename for w in caught} == {__file__}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        prepare_training_data(table, ["x", "h"], "y")
    assert caught == []


def test_fit_and_the_baselines_warn_from_the_callers_line_and_obey_its_filters(table):
    import warnings

    from digitwin_testing import two_network_fit

    from bluesky_digitwin import DigitalTwin
    from bluesky_digitwin.analysis.baselines import LinearInterpolator

    table.loc[[3, 7], "y"] = np.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")  # what `digitwin fit` does once it has shown them
        DigitalTwin.fit(table, ["x", "h"], "y", **two_network_fit())
        LinearInterpolator.fit(table, ["x", "h"], "y")
    assert caught == []
    with pytest.warns(DataWarning, match="dropped 2 of 125") as shown:
        LinearInterpolator.fit(table, ["x", "h"], "y")
    assert shown[0].filename == __file__


@pytest.mark.slow
def test_digitwin_fit_shows_the_dropped_rows_once(tmp_path, table):
    import subprocess

    from digitwin_testing import subprocess_env

    table.loc[[3, 7], "y"] = np.nan
    table.to_csv(tmp_path / "scans.csv", index=False)
    done = subprocess.run(
        [digitwin_command(), "fit", "scans.csv", "--features", "x",
         "h", "--target", "y", "--trials", "1", "--workers", "1", "--ensemble", "1", "--out",
         "twin"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=subprocess_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    warning = "digitwin: warning: dropped 2 of 125 rows with NaN or infinite values"
    assert done.stderr.count(warning) == 1, done.stderr
