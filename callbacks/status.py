"""What a TwinCallback is told to do and what it says it is doing.

:class:`RetrainPolicy` says when a training is asked for; :class:`TwinStatus` is the snapshot
the callback publishes (``cb.status``), in one of the states of
:data:`~bluesky_digitwin.protocols.TwinState`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bluesky_digitwin.data import MIN_POINTS
from bluesky_digitwin.errors import DigitwinInputError
from bluesky_digitwin.protocols import TwinState

__all__ = ["RetrainPolicy", "TwinStatus"]


@dataclass(frozen=True)
class RetrainPolicy:
    """When a :class:`TwinCallback` trains a new twin.

    Attributes
    ----------
    on_stop
        Ask for a training when a run stops (the default).
    every_n_points
        Also ask for one every this many new points (``None``: never), for long runs.
    debounce
        Seconds of quiet after the last request before training starts: a series of short runs
        triggers one training, not one per run.
    min_points
        Do not train on fewer buffered points than this.
    restart
        When new data arrive while a training runs, cancel it and start over with all the data
        (warm-started from the previous twin), rather than finishing it first. Restarting gives
        a twin of the newest data sooner when runs are short compared with a training; it
        throws away the cancelled training's work. ``False`` lets every training finish and
        then trains again on what came in meanwhile.
    max_restarts
        At most this many cancellations in a row: then the running training is allowed to
        finish, so that a steady stream of runs cannot keep the twin from ever being trained.
    """

    on_stop: bool = True
    every_n_points: int | None = None
    debounce: float = 1.0
    min_points: int = 20
    restart: bool = True
    max_restarts: int = 2

    def __post_init__(self) -> None:
        if self.every_n_points is not None and int(self.every_n_points) < 1:
            raise DigitwinInputError(
                f"every_n_points must be at least 1 or None, got {self.every_n_points}"
            )
        if not (self.debounce >= 0 and self.debounce < float("inf")):
            raise DigitwinInputError(f"debounce must be >= 0 seconds, got {self.debounce}")
        if int(self.min_points) < MIN_POINTS:
            raise DigitwinInputError(
                f"min_points must be at least {MIN_POINTS} (a twin needs that many), "
                f"got {self.min_points}"
            )
        if int(self.max_restarts) < 0:
            raise DigitwinInputError(f"max_restarts must be >= 0, got {self.max_restarts}")


@dataclass(frozen=True)
class TwinStatus:
    """What a :class:`TwinCallback` is doing (an immutable snapshot; ``str()`` reads well).

    Attributes
    ----------
    state
        ``"idle"`` (nothing asked yet), ``"waiting"`` (a training is asked for and debounced,
        or there are too few points), ``"training"``, ``"ready"`` (a twin of the newest data
        asked for), ``"error"`` (the last training failed) or ``"closed"``
        (:data:`~bluesky_digitwin.protocols.TwinState`).
    message
        One line about the state.
    n_points
        Points buffered.
    trainings
        Trainings this callback started so far (including failed and cancelled ones); after
        :meth:`TwinCallback.from_catalog` they are numbered after the earlier session's.
    twin_id
        Id of the current twin, or None.
    last_error
        The latest training error (kept after later successes), or None.
    started
        Epoch time at which the running (or latest) training started, or None.
    twin_version
        Buffer version the current twin was trained on (-1: no twin).
    buffer_version
        The buffer's version now.
    failures, cancelled
        Trainings that failed, and that were cancelled for newer data or by :meth:`close`.
    pid
        Process id (and process-group id) of the running training, or None.
    trials_finished, trials_total
        Progress of the running training's search, when known.
    """

    state: TwinState
    message: str
    n_points: int = 0
    trainings: int = 0
    twin_id: str | None = None
    last_error: str | None = None
    started: float | None = None
    twin_version: int = -1
    buffer_version: int = 0
    failures: int = 0
    cancelled: int = 0
    pid: int | None = None
    trials_finished: int | None = None
    trials_total: int | None = None

    def __str__(self) -> str:
        parts = [f"{self.state}: {self.message}"]
        if self.state == "training" and self.started is not None:
            running = f"running for {time.time() - self.started:.0f} s"
            if self.trials_total:
                running += f", {self.trials_finished or 0}/{self.trials_total} trials finished"
            parts.append(running)
        parts.append(f"{self.n_points} points buffered (version {self.buffer_version})")
        if self.twin_id is not None:
            parts.append(f"twin {self.twin_id[:8]} trained on version {self.twin_version}")
        parts.append(
            f"{self.trainings} training(s), {self.failures} failed, {self.cancelled} cancelled"
        )
        if self.last_error:
            parts.append(f"last error: {self.last_error}")
        return " | ".join(parts)
