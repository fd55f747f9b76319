"""Which points belong to one scan line: the one rule the plots, the baselines and the search use.

A scan measures lines: a sweep of a fast axis at one value of a slow axis. Points whose
slow-axis values, sorted, lie within ``atol`` of their neighbour are one line. By default
``atol`` is a billionth of the values' range: equal up to float rounding. A jittering readback
(a field that settles to within a few oersted) needs a larger ``atol``, given by the caller
that knows the instrument (``slow_atol`` of the baselines) or by the search (a ten-thousandth of
the range).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ROUNDING", "line_indices", "line_labels"]

#: The default tolerance, relative to the values' range: equal up to float rounding.
ROUNDING = 1e-9


def line_labels(values: np.ndarray, atol: float | None = None) -> tuple[np.ndarray, int]:
    """The line of every point, numbered along the slow axis from 0, and the number of lines.

    Parameters
    ----------
    values
        The slow-axis value of each point (1-D).
    atol
        Neighbouring sorted values at most this far apart are one line (default:
        :data:`ROUNDING` times the range, or times 1 for a range below 1).
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    if atol is None:
        atol = ROUNDING * max(float(np.ptp(values)), 1.0)
    order = np.argsort(values, kind="stable")
    starts = np.diff(values[order]) > atol
    sorted_labels = np.concatenate([[0], np.cumsum(starts)])
    labels = np.empty(values.size, dtype=np.int64)
    labels[order] = sorted_labels
    return labels, int(sorted_labels[-1]) + 1


def line_indices(values: np.ndarray, atol: float | None = None) -> list[np.ndarray]:
    """The indices of each line's points, lines in slow-axis order, points in their order."""
    labels, n_lines = line_labels(values, atol)
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(labels[order])) + 1) if n_lines else []
