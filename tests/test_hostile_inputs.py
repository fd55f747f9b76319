"""Hostile fit and prediction inputs: each ends in clean data, or in one clear error.

Property-based (hypothesis). The fit inputs (:func:`prepare_training_data`, :func:`load_table`)
get tables of NaN, inf, empty and one-point columns, constant targets, text, duplicated
coordinates, huge and tiny magnitudes and ragged grids, as DataFrames, Datasets, CSV and netCDF
files and bare arrays. The outcome is either a :class:`TrainingData` whose arrays are finite,
consistent and exactly the usable rows (with one :class:`DataWarning` counting the dropped ones),
or a :class:`DigitwinInputError` naming the problem and the fix: never another exception.

Predictions (:func:`prediction_dataset`, :meth:`DigitalTwin.predict`) get hostile coordinates:
NaN, inf, text, missing features, empty and misaligned arrays.

Settings. The data tests take milliseconds per example; ``deadline=None`` only where files or
TensorFlow are involved, whose first calls can be slow on a busy machine.
``HealthCheck.function_scoped_fixture`` is suppressed where ``tmp_path`` is used: every example
writes a file of its own name there, so examples share no state through it.
"""

from __future__ import annotations

import math
import re
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import xarray as xr
from digitwin_testing import smooth_table
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from bluesky_digitwin import DigitalTwin, EnsembleRecipe, SearchStrategy
from bluesky_digitwin.data import (
    DataWarning,
    DigitwinInputError,
    TrainingData,
    load_table,
    make_grid,
    prepare_training_data,
)
from bluesky_digitwin.prediction import OutsideRangeWarning, prediction_dataset
from bluesky_digitwin.surrogate.network import Scaling
from bluesky_digitwin.surrogate.search import SearchSpace
from bluesky_digitwin.surrogate.training import TrainConfig

#: Each test a few seconds: hypothesis's default of 100 examples is kept for the fast ones.
FAST = settings(max_examples=100, deadline=None)
WITH_FILES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

TINY = np.finfo(np.float64).tiny


# -- the oracle: what a cell means -------------------------------------------------------------

#: A cell that is text, not a number: the whole column must be refused.
BAD = object()


@dataclass(frozen=True)
class Cell:
    """One table cell: how it is given, and the number it stands for (NaN: missing)."""

    value: Any  # what goes into the DataFrame / Dataset
    text: str  # what goes into a CSV file
    number: Any  # float, or BAD


finite_floats = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1.0, 2.0]),  # duplicates, so constant and repeated columns occur
)
huge_floats = st.sampled_from([1e154, -1e160, 1e300, -1.7e308, 1.7976931348623157e308])
tiny_floats = st.sampled_from([5e-324, -1e-320, 2.2e-308, 1e-300])
special_floats = st.sampled_from([math.nan, math.inf, -math.inf])


def float_cells(numbers: st.SearchStrategy[float]) -> st.SearchStrategy[Cell]:
    return numbers.map(lambda v: Cell(v, repr(v), v))


#: Cells that fit a float64 column.
numeric_cells = st.one_of(
    float_cells(finite_floats),
    float_cells(huge_floats),
    float_cells(tiny_floats),
    float_cells(special_floats),
)

#: Cells that only an object column (or a CSV) can hold.
object_cells = st.one_of(
    numeric_cells,
    st.sampled_from(
        [
            Cell(None, "", math.nan),
            Cell("", "", math.nan),
            Cell("nan", "nan", math.nan),
            Cell("NA", "NA", math.nan),
            Cell("null", "null", math.nan),
            Cell("1.5", "1.5", 1.5),
            Cell("-2e3", "-2e3", -2e3),
            Cell("1e999", "1e999", math.inf),  # beyond float64: infinite
            Cell(2**1100, str(2**1100), math.inf),  # a Python int beyond float64
            Cell(7, "7", 7.0),
            Cell("abc", "abc", BAD),
            Cell("1.2.3", "1.2.3", BAD),
            Cell("x1", "x1", BAD),
        ]
    ),
)


@st.composite
def columns(draw: st.DrawFn, n: int) -> tuple[list[Cell], bool]:
    """``n`` cells of one column, and whether it is numeric (a float64 array) or objects."""
    numeric = draw(st.booleans())
    # Hostile columns are one kind among several, so that a table of three columns is often
    # usable too and the accepting path (exact rows, the drop count) is tested as much.
    kind = draw(st.sampled_from(["clean", "clean", "gaps", "hostile", "magnitude"]))
    finite = float_cells(finite_floats)
    cells = {
        "clean": finite,
        "gaps": st.one_of(finite, finite, finite, float_cells(special_floats)),
        "hostile": st.one_of(finite, finite, numeric_cells if numeric else object_cells),
        "magnitude": float_cells(
            # One magnitude for the whole column: huge or tiny spreads, not single outliers.
            st.tuples(st.floats(-1, 1), st.sampled_from([1e-320, 1e-300, 1e150, 1e300])).map(
                lambda pair: pair[0] * pair[1]
            )
        ),
    }[kind]
    return draw(st.lists(cells, min_size=n, max_size=n)), numeric


@dataclass(frozen=True)
class Table:
    """Columns ``x``, ``h``, ``y`` of cells; the oracle of what preparing them must give."""

    cells: dict[str, list[Cell]]
    numeric: dict[str, bool]

    @property
    def n(self) -> int:
        return len(self.cells["y"])

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                name: np.array(
                    [c.value for c in cells], dtype=float if self.numeric[name] else object
                )
                for name, cells in self.cells.items()
            }
        )

    def dataset(self) -> xr.Dataset:
        frame = self.frame()
        return xr.Dataset({name: ("point", frame[name].to_numpy()) for name in frame.columns})

    def csv(self, path: Path) -> Path:
        lines = [",".join(self.cells)]
        lines += [",".join(c[i].text for c in self.cells.values()) for i in range(self.n)]
        path.write_text("\n".join(lines) + "\n")
        return path

    def expected(
        self, features: Sequence[str], target: str, min_points: int
    ) -> tuple[np.ndarray, np.ndarray, int] | None:
        """The usable rows (x, y) and the number dropped, or None if an error is due."""
        names = [*features, target]
        if any(c.number is BAD for name in names for c in self.cells[name]):
            return None
        if self.n == 0:
            return None
        values = {n: np.array([c.number for c in self.cells[n]], dtype=float) for n in names}
        keep = np.logical_and.reduce([np.isfinite(v) for v in values.values()])
        if keep.sum() < min_points:
            return None
        kept = {n: v[keep] for n, v in values.items()}
        for column in kept.values():
            with np.errstate(all="ignore"):
                spread, centre = column.std(), column.mean()
            # One value (its float64 std need not be 0: 682.95... three times has one of
            # 1e-13), or a spread float64 cannot scale (overflow, or below normal floats).
            if column.min() == column.max():
                return None
            if not (np.isfinite(spread) and np.isfinite(centre) and spread >= TINY):
                return None
        x = np.column_stack([kept[f] for f in features])
        return x, kept[target], int((~keep).sum())


@st.composite
def tables(draw: st.DrawFn, max_rows: int = 16) -> Table:
    # Short tables are drawn anyway (hypothesis likes them): the second half are long enough.
    n = draw(st.one_of(st.integers(0, max_rows), st.integers(12, max_rows)))
    drawn = {name: draw(columns(n)) for name in ("x", "h", "y")}
    return Table(
        cells={name: cells for name, (cells, _) in drawn.items()},
        numeric={name: numeric for name, (_, numeric) in drawn.items()},
    )


# -- checking the outcome ----------------------------------------------------------------------


def assert_clear(error: DigitwinInputError) -> None:
    """A message for a person: one line that names the problem and, after a ';', the fix."""
    message = str(error)
    assert type(error) is DigitwinInputError
    assert "\n" not in message and "Traceback" not in message, message
    problem, _, fix = message.partition("; ")
    assert problem and len(fix) > 5, f"no fix after '; ' in {message!r}"


def outcome(
    call: Callable[[], Any],
) -> tuple[Any | None, DigitwinInputError | None, list[warnings.WarningMessage]]:
    """Run ``call``: its result or its DigitwinInputError, and its warnings.

    Any other exception propagates and fails the test (hypothesis shows the example).
    """
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:
            return call(), None, record
        except DigitwinInputError as error:
            assert_clear(error)
            return None, error, record


def dropped_counts(record: list[warnings.WarningMessage]) -> list[tuple[int, int]]:
    """(dropped, of) from the DataWarnings 'dropped K of N rows ...'."""
    counts = []
    for w in record:
        if issubclass(w.category, DataWarning):
            match = re.search(r"dropped (\d+) of (\d+) rows", str(w.message))
            assert match, f"a DataWarning that counts nothing: {w.message}"
            counts.append((int(match[1]), int(match[2])))
    return counts


def assert_usable(data: TrainingData, features: Sequence[str], target: str, min_points: int):
    """Finite, consistent, and something a network can be scaled to and learn."""
    assert isinstance(data, TrainingData)
    n = data.n_points
    assert data.x.dtype == data.y.dtype == np.float64
    assert data.x.shape == (n, len(features)) and data.y.shape == (n,)
    assert data.features == tuple(features) and data.target == target
    assert n >= min_points
    assert np.isfinite(data.x).all() and np.isfinite(data.y).all()
    # What the search does with it: scale in float64, train in float32.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # overflow or invalid: fail here
        scaling = Scaling.from_data(data.x, data.y)
        scaled_x, scaled_y = scaling.scale_x(data.x), scaling.scale_y(data.y)
    assert np.isfinite(scaled_x).all() and np.isfinite(scaled_y).all()
    assert (np.ptp(scaled_x, axis=0) > 0).all() and np.ptp(scaled_y) > 0
    assert set(data.units) == {*features, target}
    assert all(isinstance(u, str) for u in data.units.values())
    data.sha256()
    data.ranges  # noqa: B018 - computing it must not fail


def check_table(table: Table, data_in: Any, features: list[str], min_points: int) -> None:
    """The property, with the oracle: the exact usable rows and drop count, or a clear error."""
    result, error, record = outcome(
        lambda: prepare_training_data(data_in, features, "y", min_points=min_points)
    )
    expected = table.expected(features, "y", min_points)
    event("refused" if error else "dropped rows" if dropped_counts(record) else "accepted")
    # Nothing else is said: no numpy or pandas warning ahead of the answer.
    others = [w for w in record if not issubclass(w.category, DataWarning)]
    assert [f"{w.category.__name__}: {w.message}" for w in others] == []
    if expected is None:
        assert error is not None, f"accepted data that cannot be learned: {result}"
        return
    assert error is None, f"refused usable data: {error}"
    assert_usable(result, features, "y", min_points)
    x, y, dropped = expected
    np.testing.assert_array_equal(result.x, x)
    np.testing.assert_array_equal(result.y, y)
    assert dropped_counts(record) == ([(dropped, table.n)] if dropped else [])


# -- fit inputs: tables as DataFrames, Datasets, files -----------------------------------------

feature_sets = st.sampled_from([["x"], ["x", "h"], ["h", "x"]])
min_points = st.integers(1, 12)


@FAST
@given(table=tables(), features=feature_sets, min_points=min_points)
def test_dataframes(table: Table, features: list[str], min_points: int) -> None:
    check_table(table, table.frame(), features, min_points)


@FAST
@given(table=tables(), features=feature_sets, min_points=min_points)
def test_datasets_along_point(table: Table, features: list[str], min_points: int) -> None:
    check_table(table, table.dataset(), features, min_points)


@WITH_FILES
@given(table=tables(), features=feature_sets, min_points=min_points)
def test_csv_files(tmp_path: Path, table: Table, features: list[str], min_points: int) -> None:
    path = tmp_path / f"table-{uuid.uuid4().hex}.csv"
    table.csv(path)
    if table.n == 0:
        # A header and no rows is refused by load_table itself.
        _, error, _ = outcome(lambda: load_table(path))
        assert error is not None and "no data rows" in str(error)
    check_table(table, path, features, min_points)


@WITH_FILES
@given(table=tables(), features=feature_sets, min_points=min_points)
def test_netcdf_files(tmp_path: Path, table: Table, features: list[str], min_points: int) -> None:
    # netCDF holds numbers: the numeric columns as floats, the others as text.
    dataset = table.dataset()
    for name, var in dataset.data_vars.items():
        if var.dtype == object:
            dataset[name] = var.astype(str)
    path = tmp_path / f"table-{uuid.uuid4().hex}.nc"
    dataset.to_netcdf(path, engine="scipy")
    check_table(table, path, features, min_points)


@st.composite
def ragged_grids(draw: st.DrawFn) -> tuple[xr.Dataset, Table]:
    """M over (T, H): duplicated or odd coordinates, lines of different lengths (NaN-padded).

    Returns the gridded Dataset and the table it stands for (T outer, H inner, as xarray
    stacks it).
    """
    axis = st.one_of(
        float_cells(finite_floats), float_cells(finite_floats), float_cells(special_floats)
    )
    temperatures = draw(
        st.one_of(st.lists(axis, max_size=6), st.lists(axis, min_size=5, max_size=8))
    )
    fields = draw(st.one_of(st.lists(axis, max_size=4), st.lists(axis, min_size=3, max_size=4)))
    finite = float_cells(finite_floats)
    # Hostile values (huge, tiny, NaN, inf) in one grid in two: others are NaN-padded only.
    moment = draw(st.sampled_from([finite, st.one_of(finite, finite, numeric_cells)]))
    moments = [[draw(moment) for _ in fields] for _ in temperatures]
    for j in range(len(fields)):
        # A shorter line at this field: its end is NaN.
        measured = draw(st.integers(0, len(temperatures)))
        for i in range(measured, len(temperatures)):
            moments[i][j] = Cell(math.nan, "nan", math.nan)
    dataset = xr.Dataset(
        {
            "y": (
                ("x", "h"),
                np.array([[m.value for m in row] for row in moments], dtype=float).reshape(
                    len(temperatures), len(fields)
                ),
            )
        },
        coords={
            "x": [t.value for t in temperatures],
            "h": [f.value for f in fields],
        },
    )
    rows = [(t, f, moments[i][j]) for i, t in enumerate(temperatures) for j, f in enumerate(fields)]
    table = Table(
        cells={
            "x": [t for t, _, _ in rows],
            "h": [f for _, f, _ in rows],
            "y": [m for _, _, m in rows],
        },
        numeric={"x": True, "h": True, "y": True},
    )
    return dataset, table


@FAST
@given(grid=ragged_grids(), features=feature_sets, min_points=min_points)
def test_ragged_grids(grid: tuple[xr.Dataset, Table], features: list[str], min_points: int):
    dataset, table = grid
    check_table(table, dataset, features, min_points)


# -- fit inputs: the wrong things altogether ---------------------------------------------------

not_tables = st.one_of(
    st.none(),
    st.integers(),
    st.lists(st.floats(), max_size=5),
    st.dictionaries(st.sampled_from(["x", "y"]), st.lists(st.floats(), max_size=4)),
    st.lists(st.floats(), max_size=12).map(np.array),
    st.integers(0, 12).map(lambda n: np.arange(2.0 * n).reshape(n, 2)),
    st.lists(st.floats(), min_size=1, max_size=5).map(lambda v: pd.Series(v, name="y")),
    st.lists(st.floats(), min_size=1, max_size=5).map(lambda v: xr.DataArray(v, name="y")),
    st.just(b"x,y\n1,2\n"),
    st.sampled_from(["", "no-such-file.csv", "x" * 5000 + ".csv", "bad\x00name.csv", "/"]),
)


@FAST
@given(data=not_tables, features=feature_sets)
def test_things_that_are_not_tables(data: Any, features: list[str]) -> None:
    _, error, _ = outcome(lambda: prepare_training_data(data, features, "y"))
    assert error is not None


names = st.one_of(
    st.sampled_from(["x", "h", "y", "T", "", " x"]),
    st.none(),
    st.integers(-2, 2),
    st.floats(allow_nan=True),
    st.lists(st.sampled_from(["x", "h", "y"]), max_size=2),
)


@FAST
@given(
    features=st.one_of(names, st.lists(names, max_size=3), st.tuples(names, names)),
    target=names,
)
def test_odd_feature_and_target_names(features: Any, target: Any) -> None:
    table = smooth_table()
    result, error, _ = outcome(lambda: prepare_training_data(table, features, target))
    if error is None:
        assert_usable(result, result.features, result.target, 10)
        assert {*result.features, result.target} <= set(table.columns)


@st.composite
def odd_datasets(draw: st.DrawFn) -> xr.Dataset:
    """Tables along ``point`` with variables that are not columns."""
    n = draw(st.integers(0, 14))
    x = np.linspace(0.0, 1.0, n)
    ds = xr.Dataset({"x": ("point", x), "y": ("point", np.sin(3 * x))})
    extra = draw(
        st.sampled_from(
            [
                "image",  # a 2-D variable per point (an area detector)
                "scalar",  # a 0-D variable: one value for the whole table
                "other-dim",  # a variable along an unrelated dimension
                "x-2d",  # a feature with a second dimension
                "units",  # odd units attributes
                "nothing",
            ]
        )
    )
    if extra == "image":
        ds["image"] = (("point", "pixel"), np.ones((n, 3)))
    elif extra == "scalar":
        ds["h"] = 5.0
    elif extra == "other-dim":
        ds["h"] = ("time", np.arange(4.0))
    elif extra == "x-2d":
        ds["x"] = (("point", "channel"), np.stack([x, x], axis=1))
    elif extra == "units":
        ds["x"].attrs["units"] = draw(st.sampled_from([None, 5, b"K", ["K"], "K"]))
    return ds


@FAST
@given(dataset=odd_datasets(), features=feature_sets)
def test_datasets_with_variables_that_are_not_columns(dataset: xr.Dataset, features: list[str]):
    result, error, _ = outcome(lambda: prepare_training_data(dataset, features, "y"))
    if error is None:
        assert_usable(result, features, "y", 10)


def test_columns_whose_names_repeat(tmp_path: Path) -> None:
    """Two columns of one name (after the CSV's spaces are stripped): which one is meant?"""
    table = smooth_table()
    twice = pd.concat([table, table[["x"]]], axis=1)
    path = tmp_path / "twice.csv"
    path.write_text(" x,h,y,x \n" + "".join(f"{a},{b},{c},{a}\n" for a, b, c in table.values))
    for data in (twice, path):
        _, error, _ = outcome(lambda data=data: prepare_training_data(data, ["x", "h"], "y"))
        assert error is not None and "'x'" in str(error)


def test_dates_and_complex_numbers_are_refused() -> None:
    table = smooth_table()
    dates = table.assign(x=pd.date_range("2024-01-01", periods=len(table), freq="s"))
    complex_objects = table.assign(y=np.array([complex(v, 1) for v in table["y"]], dtype=object))
    for data in (dates, complex_objects):
        _, error, _ = outcome(lambda data=data: prepare_training_data(data, ["x", "h"], "y"))
        assert error is not None


# -- fit inputs: any file at all ---------------------------------------------------------------

csv_tokens = st.sampled_from(
    [
        "x",
        "y",
        "h",
        ",",
        ",",
        "\n",
        "\n",
        "\r\n",
        '"',
        " ",
        "1",
        "2.5",
        "-3e2",
        "nan",
        "inf",
        "1e999",
        "NA",
        "abc",
        "#",
        ";",
        "\t",
        "\x00",
        "\ufeff",
        "é",
        "0x1F",
        "1_000",
    ]
)


@WITH_FILES
@given(
    text=st.lists(csv_tokens, max_size=120).map("".join),
    encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]),
    suffix=st.sampled_from([".csv", ".txt", ".nc", ""]),
)
def test_any_file_is_read_or_refused(tmp_path: Path, text: str, encoding: str, suffix: str):
    path = tmp_path / f"file-{uuid.uuid4().hex}{suffix}"
    path.write_bytes(text.encode(encoding, errors="replace"))
    loaded, error, _ = outcome(lambda: load_table(path))
    if error is None:
        assert isinstance(loaded, xr.Dataset) and set(loaded.dims) <= {"point"}
    features = [n for n in ("x", "h") if loaded is not None and n in loaded]
    result, error, _ = outcome(
        lambda: prepare_training_data(path, features or ["x"], "y", min_points=2)
    )
    if error is None:
        assert_usable(result, result.features, "y", 2)


@WITH_FILES
@given(content=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".nc"]))
def test_binary_garbage_is_refused_or_read(tmp_path: Path, content: bytes, suffix: str):
    path = tmp_path / f"garbage-{uuid.uuid4().hex}{suffix}"
    path.write_bytes(content)
    result, error, _ = outcome(lambda: prepare_training_data(path, ["x"], "y", min_points=2))
    if error is None:
        assert_usable(result, ["x"], "y", 2)


def test_paths_that_are_not_files(tmp_path: Path) -> None:
    for path in (tmp_path, tmp_path / "missing.csv", tmp_path / ("n" * 4000 + ".csv")):
        _, error, _ = outcome(lambda path=path: load_table(path))
        assert error is not None


# -- predictions: hostile coordinates ----------------------------------------------------------

FEATURES = ("x", "h")
RANGES = {"x": (0.0, 1.0), "h": (0.0, 2.0)}

coordinate_values = st.one_of(
    st.floats(-0.5, 2.5),
    st.floats(-0.5, 2.5),
    special_floats,
    huge_floats,
    tiny_floats,
)


@st.composite
def coordinates(draw: st.DrawFn) -> Any:
    """Where to predict: dicts, frames, grids and point Datasets, good and bad."""
    n = draw(st.integers(0, 6))
    columns: dict[str, Any] = {}
    for name in (*FEATURES, "extra"):
        # Half the time plain numbers: predictions that go through are tested as much.
        kind = draw(
            st.one_of(
                st.just("floats"),
                st.sampled_from(
                    [
                        "floats",
                        "missing",
                        "other-length",
                        "scalar",
                        "text",
                        "numeric-text",
                        "objects",
                        "2-d",
                        "none",
                        "ints",
                        "bools",
                    ]
                ),
            )
        )
        if kind == "missing":
            continue
        length = draw(st.integers(0, 6)) if kind == "other-length" else n
        values = draw(st.lists(coordinate_values, min_size=length, max_size=length))
        columns[name] = {
            "floats": lambda v: np.array(v, dtype=float),
            "other-length": lambda v: np.array(v, dtype=float),
            "scalar": lambda v: draw(coordinate_values),
            "text": lambda v: np.array(["abc"] * len(v)),
            "numeric-text": lambda v: [str(x) for x in v],
            "objects": lambda v: np.array([*v[:-1], None][: len(v)], dtype=object),
            "2-d": lambda v: np.array(v, dtype=float).reshape(-1, 1),
            "none": lambda v: None,
            "ints": lambda v: np.arange(len(v)),
            "bools": lambda v: np.arange(len(v)) % 2 == 0,
        }[kind](values)
    tables = ["dict", "frame", "grid", "points"]
    container = draw(st.one_of(st.sampled_from(tables), st.sampled_from([*tables, "list", "str"])))
    if container == "frame":
        try:
            return pd.DataFrame(columns)
        except (ValueError, TypeError):
            assume(False)  # pandas itself refuses these columns: nothing of ours to test
    if container == "grid":
        # Each feature its own dimension, like make_grid, but with any values.
        try:
            return xr.Dataset(
                coords={k: np.atleast_1d(np.asarray(v)).ravel() for k, v in columns.items()}
            )
        except (ValueError, TypeError):
            assume(False)
    if container == "points":
        try:
            return xr.Dataset(
                {k: ("point", np.atleast_1d(np.asarray(v))) for k, v in columns.items()}
            )
        except (ValueError, TypeError):
            assume(False)
    if container == "list":
        return list(columns.values())
    if container == "str":
        return "x=0.5,h=1"
    return columns


def fake_model(x: np.ndarray, outside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A model that is finite wherever its inputs are, like a network (even at 1.7e308)."""
    return 0.5 * x[:, 0] + 0.5 * x[:, 1], np.abs(x[:, 0])


def check_prediction(
    points: Any,
    predict: Callable[[Any], xr.Dataset],
    target: str,
    ranges: dict[str, tuple[float, float]],
) -> None:
    """A prediction that says where it is meaningful, or a clear error."""
    result, error, record = outcome(lambda: predict(points))
    event("refused" if error else "predicted")
    if error is not None:
        return
    assert isinstance(result, xr.Dataset)
    values, std, outside = result[target], result[f"{target}_std"], result["outside_range"]
    assert values.dims == std.dims == outside.dims
    assert outside.dtype == bool
    assert result.attrs["data_origin"] == "simulated"
    coords = xr.broadcast(*[result[f].astype(float) for f in FEATURES])
    flat = np.column_stack([c.transpose(*values.dims).values.ravel() for c in coords])
    finite = np.isfinite(flat).all(axis=1)
    inside = finite & np.logical_and.reduce(
        [
            (flat[:, i] >= lo) & (flat[:, i] <= hi)
            for i, (lo, hi) in enumerate(ranges[f] for f in FEATURES)
        ]
    )
    flagged = outside.values.ravel()
    np.testing.assert_array_equal(flagged, ~inside)
    # Non-finite coordinates: no number, rather than a number made from NaN.
    assert np.isnan(values.values.ravel()[~finite]).all()
    assert np.isnan(std.values.ravel()[~finite]).all()
    assert np.isfinite(values.values.ravel()[inside]).all()
    categories = [w.category for w in record]
    # Nothing else is said: no numpy overflow from a huge coordinate, for one.
    others = [w for w in record if w.category not in (DataWarning, OutsideRangeWarning)]
    assert [f"{w.category.__name__}: {w.message}" for w in others] == []
    assert (DataWarning in categories) == bool((~finite).any()), categories
    assert (OutsideRangeWarning in categories) == bool((finite & ~inside).any()), categories


def fake_predict(points: Any) -> xr.Dataset:
    return prediction_dataset(points, FEATURES, "y", {"x": "K", "y": "V"}, RANGES, fake_model)


@FAST
@given(points=coordinates())
def test_prediction_dataset_with_hostile_coordinates(points: Any) -> None:
    check_prediction(points, fake_predict, "y", RANGES)


@FAST
@given(
    axes=st.dictionaries(
        st.sampled_from(["x", "h", ""]),
        st.one_of(
            st.lists(coordinate_values, max_size=4),
            st.lists(st.sampled_from(["a", "1", None]), max_size=3),
            st.none(),
            coordinate_values,
            st.just(np.ones((2, 2))),
        ),
    )
)
def test_make_grid_with_hostile_axes(axes: dict[str, Any]) -> None:
    grid, error, _ = outcome(lambda: make_grid(**axes))
    if error is None:
        assert set(grid.dims) == set(axes)
        assert all(grid[a].dtype == np.float64 and grid[a].size for a in axes)
        if set(axes) == set(FEATURES):
            check_prediction(grid, fake_predict, "y", RANGES)


@pytest.fixture(scope="module")
def tiny_twin() -> DigitalTwin:
    """A twin of the smooth table, fitted once for this module (a few seconds)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DigitalTwin.fit(
            smooth_table(),
            list(FEATURES),
            "y",
            n_trials=2,
            ensemble=EnsembleRecipe(size=2, refit_epochs=2),
            seed=0,
            n_workers=1,
            strategy=SearchStrategy(pruner=optuna.pruners.NopPruner()),
            space=SearchSpace(n_layers=(2, 2), n_units=(8, 8), l2=None),
            train_config=TrainConfig(max_epochs=10, chunk_epochs=5),
        )


@settings(max_examples=40, deadline=None)
@given(points=coordinates())
def test_twin_predict_with_hostile_coordinates(tiny_twin: DigitalTwin, points: Any) -> None:
    check_prediction(points, tiny_twin.predict, "y", tiny_twin.ranges)
    members, error, _ = outcome(lambda: tiny_twin.predict_members(points, warn=False))
    if error is None:
        assert members.dims[0] == "member" and members.sizes["member"] == 2
        # Each network answers NaN where a coordinate is NaN or infinite, as the mean does.
        mean, _, _ = outcome(lambda: tiny_twin.predict(points, warn=False)["y"])
        np.testing.assert_allclose(members.mean("member"), mean, rtol=1e-6, atol=1e-9)
