"""Which points are one scan line (bluesky_digitwin.scan_lines)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from bluesky_digitwin.scan_lines import line_indices, line_labels


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
