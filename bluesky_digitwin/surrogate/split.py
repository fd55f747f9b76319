"""The held-out split a search chooses its networks on, scaled: training and validation arrays.

Points or whole scan lines are held out (:meth:`SplitData.split`); the arrays are scaled with
all the points, as the final twin is. Local search workers read the split from ``.npy`` files
(:meth:`SplitData.save` / :meth:`SplitData.load`), never from a pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bluesky_digitwin.atomic_files import atomic_path
from bluesky_digitwin.data import DigitwinInputError, TrainingData
from bluesky_digitwin.scan_lines import slow_axis_lines
from bluesky_digitwin.surrogate.network import Scaling
from bluesky_digitwin.surrogate.search_settings import check_split

__all__ = ["SplitData"]


@dataclass(frozen=True)
class SplitData:
    """Scaled arrays for the search: training and held-out validation points."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    scaling: Scaling
    #: What was held out: "points" or whole scan "lines".
    held_out: str = "points"

    @classmethod
    def split(
        cls,
        data: TrainingData,
        validation_fraction: float,
        seed: int,
        holdout: str = "points",
        *,
        fourier_scale: float | None = None,
        scaling: Scaling | None = None,
    ) -> SplitData:
        """Hold out points to choose models on.

        ``holdout="lines"`` holds out whole scan lines (e.g. every point of the M(T) sweep at
        one field), chosen among the interior lines of the slow axis: what the twin is for is
        interpolating *between* lines, and random points of measured lines do not test that.
        ``"points"`` holds out random points; ``"auto"`` uses lines when the data are scan
        lines (:func:`~bluesky_digitwin.scan_lines.slow_axis_lines`) with at least one interior
        line, else points.

        The arrays are the networks' inputs (:meth:`Scaling.inputs`): with ``fourier_scale``,
        the scaled coordinates and their Fourier features, drawn with ``seed``. ``scaling``
        (a study's recorded one, for a worker elsewhere) is used as it is instead.
        """
        check_split(validation_fraction, holdout)
        rng = np.random.default_rng(seed)
        lines = slow_axis_lines(data.x) if holdout != "points" else None
        if lines is not None:
            line_of_point, n_lines = lines
            interior = np.arange(1, n_lines - 1)
            n_val_lines = min(len(interior), max(1, round(n_lines * validation_fraction)))
            held = rng.choice(interior, size=n_val_lines, replace=False)
            is_val = np.isin(line_of_point, held)
            val, tr = np.flatnonzero(is_val), np.flatnonzero(~is_val)
        elif holdout == "lines":
            raise DigitwinInputError(
                "holdout='lines' needs scan lines (a feature with a few values, each with "
                "several points, and at least 3 of them); use holdout='points'"
            )
        else:
            n_val = max(1, round(data.n_points * validation_fraction))
            order = rng.permutation(data.n_points)
            val, tr = order[:n_val], order[n_val:]
        # Scale with all the points: the final twin sees them all, and its scaling must match.
        if scaling is None:
            scaling = Scaling.from_data(data.x, data.y, fourier_scale=fourier_scale, seed=seed)
        return cls(
            x_train=scaling.inputs(data.x[tr]),
            y_train=scaling.scale_y(data.y[tr]),
            x_val=scaling.inputs(data.x[val]),
            y_val=scaling.scale_y(data.y[val]),
            scaling=scaling,
            held_out="points" if lines is None else "lines",
        )

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("x_train", "y_train", "x_val", "y_val"):
            with atomic_path(directory / f"{name}.npy") as path, open(path, "wb") as f:
                np.save(f, getattr(self, name), allow_pickle=False)

    @classmethod
    def load(cls, directory: Path, scaling: Scaling) -> SplitData:
        arrays = {
            name: np.load(directory / f"{name}.npy", allow_pickle=False)
            for name in ("x_train", "y_train", "x_val", "y_val")
        }
        return cls(**arrays, scaling=scaling)
