"""How a search chooses its trials, and what workers on other machines need: two settings objects.

:func:`~bluesky_digitwin.surrogate.search.run_search` and
:meth:`~bluesky_digitwin.twin.DigitalTwin.fit` take their settings in a few typed groups, the
way Optuna groups a study's sampler, pruner and storage, instead of a long train of keywords:

- :class:`~bluesky_digitwin.surrogate.search_space.SearchSpace`: where the search looks;
- :class:`SearchStrategy` (here): how trials are proposed, stopped early, seeded and judged;
- :class:`~bluesky_digitwin.surrogate.training.TrainConfig`: how one network trains;
- :class:`~bluesky_digitwin.surrogate.ensemble.EnsembleRecipe`: how the twin's networks are
  made from the finished search;
- :class:`RemoteWorkers` (here): what workers joining from other machines need.

The number of trials and of local workers, the seed, the storage and the study's name stay
plain keywords: they are what a user sets most often (and what ``digitwin fit`` has flags for).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bluesky_digitwin.data_sources import TiledRunsSource
from bluesky_digitwin.errors import DigitwinInputError

__all__ = [
    "HEARTBEAT_INTERVAL",
    "HOLDOUTS",
    "RemoteWorkers",
    "SearchStrategy",
    "check_fourier_scale",
    "check_fourier_with_monotonic",
    "check_heartbeat",
    "check_split",
    "is_number",
    "is_whole",
]

#: Seconds between a running trial's heartbeats on a database storage. A trial silent for twice
#: this long is failed and queued again (by whichever worker starts a trial next).
HEARTBEAT_INTERVAL = 10
#: What a search may hold out to choose networks on (see ``SplitData.split``).
HOLDOUTS = ("points", "lines", "auto")


def is_whole(value: Any) -> bool:
    """A whole number (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """A real number (numpy's too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_heartbeat(interval: int | None) -> None:
    """Raise :class:`DigitwinInputError` unless ``interval`` is None or whole seconds >= 1."""
    if interval is not None and not (is_whole(interval) and interval >= 1):
        raise DigitwinInputError(
            f"heartbeat_interval must be None or whole seconds >= 1, got {interval!r}"
        )


def check_split(validation_fraction: float, holdout: str) -> None:
    """Raise :class:`DigitwinInputError` unless the held-out share and kind make sense."""
    if not (is_number(validation_fraction) and 0 < validation_fraction < 1):
        raise DigitwinInputError(
            f"validation_fraction must be between 0 and 1, got {validation_fraction}"
        )
    if holdout not in HOLDOUTS:
        raise DigitwinInputError(f"holdout must be 'auto', 'points' or 'lines', got {holdout!r}")


def check_fourier_scale(scale: Any) -> None:
    """Raise :class:`DigitwinInputError` unless ``scale`` is None or a positive finite number."""
    if scale is None:
        return
    if not (is_number(scale) and math.isfinite(scale)):
        raise DigitwinInputError(
            f"fourier_scale must be None or a positive number (cycles per standard deviation "
            f"of a feature, e.g. 10), got {scale!r}"
        )
    if scale <= 0:
        raise DigitwinInputError(
            f"fourier_scale must be positive (e.g. 10), got {scale}; leave it out (None) for "
            "no Fourier features"
        )


def check_fourier_with_monotonic(fourier_scale: float | None, monotonic: Sequence[Any]) -> None:
    """Raise :class:`DigitwinInputError` when Fourier features and a stated monotonic shape are
    both asked for: the slope penalty acts on the network's inputs, which with Fourier features
    are no longer the coordinates alone, and the encoded networks' slopes oscillate anyway."""
    if fourier_scale is not None and monotonic:
        raise DigitwinInputError(
            "Fourier features (fourier_scale) and a monotonic shape cannot be combined: the "
            "shape is for smooth quantities such as M(T, H), Fourier features for fine "
            "structure along measured lines; drop one of the two"
        )


@dataclass(frozen=True)
class SearchStrategy:
    """How the search proposes, stops and judges its trials.

    Attributes
    ----------
    sampler, pruner
        Optuna's sampler and pruner; ``None`` uses TPE (seeded by the search's seed) and ASHA
        (rungs at the training recipe's epochs), the paper's choices. Several local workers
        need them defined in a module, not in the user's script (workers are fresh
        interpreters).
    warm_start
        Hyperparameters (one mapping or several) to try first, e.g.
        ``previous_twin.hyperparameters``.
    validation_fraction
        Share of points (or of scan lines) held out to choose networks on.
    holdout
        What is held out: random ``"points"`` (default), whole scan ``"lines"`` (chosen among
        interior lines, so networks are chosen on interpolating between lines), or ``"auto"``:
        lines when the data are scan lines. On ErCo2, lines chose no better twins for |ΔS_M|
        than points (benchmarks/).
    fourier_scale
        What the networks see: ``None`` (default), the scaled coordinates; a number, also
        Fourier features of them, with frequencies of this many cycles per standard deviation
        of a feature (capped by each feature's sampling;
        :mod:`~bluesky_digitwin.surrogate.fourier`). For a map whose fine structure along
        its measured lines is what the twin must reproduce (the 30 k-point ARPES map: R² 0.996
        against 0.95 in the same epochs, with 10); they make interpolation *between* lines and
        derivatives worse (benchmarks/RESULTS.md), so they are not the default.
    """

    sampler: Any = None
    pruner: Any = None
    warm_start: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
    validation_fraction: float = 0.2
    holdout: str = "points"
    fourier_scale: float | None = None

    def __post_init__(self) -> None:
        check_split(self.validation_fraction, self.holdout)
        check_fourier_scale(self.fourier_scale)

    @property
    def warm_start_params(self) -> list[dict[str, Any]]:
        """The hyperparameters to try first, as a list of dicts."""
        if self.warm_start is None:
            return []
        if isinstance(self.warm_start, Mapping):
            return [dict(self.warm_start)]
        return [dict(params) for params in self.warm_start]

    @property
    def custom(self) -> bool:
        """The search uses its own sampler or pruner (which a study record cannot carry)."""
        return self.sampler is not None or self.pruner is not None


@dataclass(frozen=True)
class RemoteWorkers:
    """What workers joining a search from other machines (``digitwin worker``) need.

    Attributes
    ----------
    artifact_store
        Where trial networks go (an Optuna artifact store). ``None``: a directory beside a
        journal file, or the user cache for a database; workers elsewhere need a store they
        reach too (a shared directory, or any Optuna artifact store given to them).
    data_source
        Where they read the training data again: the runs in Tiled
        (:class:`~bluesky_digitwin.data_sources.TiledRunsSource`, as
        :meth:`~bluesky_digitwin.twin.DigitalTwin.fit_runs` gives it). ``None``: the data are
        stored in the study as an artifact.
    heartbeat_interval
        Seconds between heartbeats of running trials on a database storage, so that a trial
        whose worker died is failed and run again; ``None`` turns heartbeats off.
    """

    artifact_store: Any = None
    data_source: TiledRunsSource | None = None
    heartbeat_interval: int | None = HEARTBEAT_INTERVAL

    def __post_init__(self) -> None:
        if self.data_source is not None and not isinstance(self.data_source, TiledRunsSource):
            raise DigitwinInputError(
                "data_source must be runs to read again from Tiled (TiledRunsSource, from "
                "bluesky_digitwin.tiled.runs_data_source), got "
                f"{type(self.data_source).__name__}; without one the data are stored in the study"
            )
        check_heartbeat(self.heartbeat_interval)
