"""Which points are one scan line (bluesky_digitwin.scan_lines)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from bluesky_digitwin.scan_lines import line_indices, line_labels, slow_axis_lines


def test_lines_are_numbered_along_the_slow_axis():
    values = np.array([5.0, 1.0, 5.0, 3.0, 1.0 + 1e-12])
    labels, n = line_labels(values)
    assert n == 3 and list(labels) == [2, 0, 2, 1, 0]
    assert [list(i) for i in line_indices(values)] == [[1, 4], [3], [0, 2]]


def test_a_jittering_readback_is_one_line_with_a_tolerance():
    values = np.array([1000.0, 1000.4, 999.7, 2000.2, 1999.9])
    assert line_labels(values)[1] == 5  # by default only rounding is forgiven
    labels, n = line_labels(values, atol=1.0)
    assert n == 2 and list(labels) == [0, 0, 0, 1, 1]


def test_no_points_no_lines():
    assert line_labels(np.array([]))[1] == 0 and line_indices(np.array([])) == []


@given(st.lists(st.integers(-5, 5), min_size=1, max_size=40))
def test_every_point_is_in_exactly_one_line_of_equal_values(ints):
    values = np.array(ints, dtype=float) * 0.1
    groups = line_indices(values)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(values)))
    assert len(groups) == len(np.unique(values))
    assert all(np.ptp(values[g]) == 0 for g in groups)
    assert [values[g[0]] for g in groups] == sorted(values[g[0]] for g in groups)


def test_the_slow_axis_and_its_lines_are_found_despite_readback_jitter():
    rng = np.random.default_rng(0)
    temperature = np.tile(np.linspace(10.0, 60.0, 20), 5)
    field = np.repeat([0.0, 0.5, 1.0, 1.5, 2.0], 20) + rng.normal(0, 1e-6, 100)
    line_of_point, n_lines = slow_axis_lines(np.column_stack([temperature, field]))
    assert n_lines == 5
    assert list(np.bincount(line_of_point)) == [20] * 5
    assert len(set(line_of_point[40:60])) == 1  # the 1 T line, jitter and all


def test_a_line_straddling_a_rounding_edge_stays_one_line():
    # Binned at 1e-4 of the range, 0.99995 and 1.00005 (range 2) fall into two bins; chained,
    # they are one line.
    field = np.repeat([0.0, 1.0, 2.0], 4) + np.array(
        [0, 0, 0, 0, -5e-5, 5e-5, -5e-5, 5e-5, 0, 0, 0, 0]
    )
    x = np.column_stack([np.tile(np.arange(4.0), 3), field])
    assert slow_axis_lines(x)[1] == 3


def test_scattered_points_are_not_scan_lines():
    assert slow_axis_lines(np.random.default_rng(1).uniform(size=(200, 2))) is None
    assert slow_axis_lines(np.arange(10.0)) is None  # one feature: no slow axis
