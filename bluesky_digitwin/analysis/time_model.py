"""How long a measurement takes: the time model a step suggestion prices candidates with."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bluesky_digitwin.data import DigitwinInputError

__all__ = ["TimeModel", "format_duration"]


@dataclass(frozen=True)
class TimeModel:
    """How long a measurement takes: lines (sweeps) of points, and changes of the stepped axis.

    ``time = n_lines * line_time + (n_lines - 1) * seconds_per_step_change``, where
    ``line_time = points_per_line * seconds_per_point``, or, for a continuous sweep
    (``sweep_rate`` given), ``sweep span / sweep_rate``, the points being taken on the fly.

    The defaults are those of a settled-temperature M(T) run on a SQUID magnetometer (MPMS), as
    timed in the authors' raw MPMS export of an M(T) run of the paper's reference code (10-60 K,
    8 fields): 101 points in about 78 min per field (45 s per point), and at least 40 min between
    sweeps to change the field and cool back to the start. Set ``points_per_line`` to the points
    the real sweep will take, which need not be those of the simulated sweep grid.

    Attributes
    ----------
    seconds_per_point
        Time per measured point in a stepped (settled) sweep, s.
    seconds_per_step_change
        Time between two lines: changing the stepped axis and returning to the sweep's start, s.
    sweep_rate
        Rate of a continuous sweep in the sweep axis' units per second (e.g. K/s); ``None`` for a
        settled, point-by-point sweep.
    points_per_line
        Points measured per line; ``None``: as many as the sweep grid simulated.
    """

    seconds_per_point: float = 45.0
    seconds_per_step_change: float = 2400.0
    sweep_rate: float | None = None
    points_per_line: int | None = None

    def __post_init__(self) -> None:
        for name in ("seconds_per_point", "seconds_per_step_change"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise DigitwinInputError(f"{name} must be a number >= 0, got {value!r}")
        if self.sweep_rate is not None and not (
            math.isfinite(self.sweep_rate) and self.sweep_rate > 0
        ):
            raise DigitwinInputError(f"sweep_rate must be a number > 0, got {self.sweep_rate!r}")
        if self.points_per_line is not None and not (
            isinstance(self.points_per_line, (int, np.integer)) and self.points_per_line >= 1
        ):
            raise DigitwinInputError(
                f"points_per_line must be a whole number >= 1, got {self.points_per_line!r}"
            )

    def line_seconds(self, n_points: int, sweep_span: float | None = None) -> float:
        """Time of one line of ``n_points`` (overridden by ``points_per_line``), s."""
        if self.sweep_rate is not None:
            if sweep_span is None:
                raise DigitwinInputError(
                    "a sweep_rate needs exactly one sweep axis to know the span swept"
                )
            return float(sweep_span) / self.sweep_rate
        points = self.points_per_line if self.points_per_line is not None else n_points
        return points * self.seconds_per_point

    def seconds(self, n_lines: int, n_points: int, sweep_span: float | None = None) -> float:
        """Estimated time of ``n_lines`` lines of ``n_points`` points each, s."""
        changes = max(int(n_lines) - 1, 0)
        return n_lines * self.line_seconds(n_points, sweep_span) + (
            changes * self.seconds_per_step_change
        )


def format_duration(seconds: float) -> str:
    """A duration for people: ``"40 s"``, ``"25 min"``, ``"3 h 20 min"``, ``"2.1 days"``."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    if seconds < 48 * 3600:
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{seconds / 86400:.1f} days"
