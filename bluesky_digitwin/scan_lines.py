"""Which points belong to one scan line: the one rule the plots, the baselines and the search use.

A scan measures lines: a sweep of a fast axis at one value of a slow axis. Points whose
slow-axis values, sorted, lie within ``atol`` of their neighbour are one line. By default
``atol`` is a billionth of the values' range: equal up to float rounding. A jittering readback
(a field that settles to within a few oersted) needs a larger ``atol``, given by the caller
that knows the instrument (``slow_atol`` of the baselines) or, where no one says, by
:func:`slow_axis` (:data:`READBACK_JITTER` of the range), which also finds which feature
is the slow axis.

Neighbours are chained rather than binned: a line whose readbacks straddle a bin edge stays one
line.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "READBACK_JITTER",
    "ROUNDING",
    "line_indices",
    "line_labels",
    "rounding_atol",
    "slow_axis",
    "slow_axis_lines",
]

#: The default tolerance, relative to the values' range: equal up to float rounding.
ROUNDING = 1e-9
#: The tolerance, relative to the range, when lines must be found with no instrument's word on
#: its readback: a field swept over 5 T whose readback settles within 5 Oe is still one line.
READBACK_JITTER = 1e-4


def rounding_atol(values: np.ndarray) -> float:
    """The default tolerance of :func:`line_labels`: :data:`ROUNDING` times the values' range."""
    return ROUNDING * float(np.ptp(values)) if np.size(values) else 0.0


def line_labels(values: np.ndarray, atol: float | None = None) -> tuple[np.ndarray, int]:
    """The line of every point, numbered along the slow axis from 0, and the number of lines.

    Parameters
    ----------
    values
        The slow-axis value of each point (1-D).
    atol
        Neighbouring sorted values at most this far apart are one line (default:
        :data:`ROUNDING` times the range).
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    if atol is None:
        atol = rounding_atol(values)
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


def slow_axis_lines(
    x: np.ndarray, max_lines: int = 64, rtol: float = READBACK_JITTER
) -> tuple[np.ndarray, int] | None:
    """Find the scan lines of a table of features: its lines, without saying which column.

    :func:`slow_axis` without the column: ``(line of every point, number of lines)`` or None.
    """
    found = slow_axis(x, max_lines, rtol)
    return None if found is None else found[1:]


def slow_axis(
    x: np.ndarray, max_lines: int = 64, rtol: float = READBACK_JITTER
) -> tuple[int, np.ndarray, int] | None:
    """Find the scan lines of a table of features: which column is the slow axis, and its lines.

    A column is a candidate slow axis when its values fall into between 3 and ``max_lines``
    lines (values within ``rtol`` of the column's range chained together) of at least 3 points
    each; the candidate with the fewest lines wins.

    Parameters
    ----------
    x
        Feature values, one row per point (2-D).
    max_lines
        More lines than this is a scatter of points, not a scan.
    rtol
        Neighbouring values closer than this fraction of the range are one line.

    Returns
    -------
    tuple or None
        ``(slow-axis column, line of every point, number of lines)``, lines numbered along the
        slow axis; None when no column qualifies.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] < 2:
        return None
    best: tuple[int, np.ndarray, int] | None = None
    for index, column in enumerate(x.T):
        span = float(np.ptp(column))
        if span == 0:
            continue
        labels, n_lines = line_labels(column, rtol * span)
        if 3 <= n_lines <= max_lines and np.bincount(labels).min() >= 3:
            if best is None or n_lines < best[2]:
                best = (index, labels, n_lines)
    return best
