"""The TwinCallback's background: a monitor thread and the training processes it runs.

The :class:`Trainer` debounces the callback's requests, takes a snapshot of the buffer, starts
each training as a fresh Python interpreter in its own process group at a lower CPU priority
(:func:`run_training_process` is what that interpreter runs), cancels it when newer data make
it stale, and collects its twin, its error or its progress into the callback's
:class:`~bluesky_digitwin.callbacks.status.TwinStatus`. Temporary work directories are held by
a lock for their callback's lifetime and removed by :func:`remove_stale_work_dirs` once their
owner is gone, however it ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bluesky_digitwin.atomic_files import atomic_path
from bluesky_digitwin.buffer import DataKeyError, ScanBuffer
from bluesky_digitwin.errors import DigitwinError
from bluesky_digitwin.processes import child_environment, skip_exit_collection, watch_parent
from bluesky_digitwin.protocols import TwinState
from bluesky_digitwin.surrogate.search_settings import SearchStrategy
from bluesky_digitwin.twin import DigitalTwin

from .status import RetrainPolicy, TwinStatus

__all__ = [
    "RUNNING_TRAINING",
    "Trainer",
    "TrainingJob",
    "TrainingOutcome",
    "close_abandoned_study",
    "read_json",
    "relay_warnings",
    "remove_stale_work_dirs",
    "run_training_process",
]

# The TwinCallback's log: its users set its level by that name, whichever module writes.
logger = logging.getLogger("bluesky_digitwin.callbacks.twin")

#: How often the monitor looks at a running training (exit, progress), seconds.
_POLL = 0.2
#: Seconds a training process group gets to exit after SIGTERM before SIGKILL.
_GRACE = 2.0
#: Niceness added to training processes: the instrument's own process must win the CPU.
_NICENESS = 10
#: The blocker "too few points": its message counts the points buffered at the time it is read.
_FEW_POINTS = "too few points"
#: What a training process runs. ``-c`` rather than ``-m``: with no ``__main__`` module, the
#: search's spawned workers do not re-import this module (and bluesky) for nothing.
_BOOT = (
    "from bluesky_digitwin.callbacks.training import run_training_process; run_training_process()"
)
#: Warnings of a training that are not relayed to the callback's log.
_QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
#: In a work directory: which training is running (its number, its study), removed when it
#: ends. Left behind by a session that was killed, it tells from_catalog what was abandoned.
RUNNING_TRAINING = "training.json"

# -- the background: monitor thread and training processes -------------------------------------


@dataclass(eq=False)
class _Worker:
    """A training process, with the directory it works in (also its TMPDIR)."""

    number: int
    directory: Path
    process: subprocess.Popen


@dataclass(frozen=True)
class TrainingJob:
    """What a training process is sent (pickled through its standard input): the data's file,
    what :meth:`DigitalTwin.fit` is to learn and with which options, and where to answer."""

    data: str
    features: tuple[str, ...]
    target: str
    options: dict[str, Any]
    warm_start: list[dict[str, Any]] | None
    provenance: dict[str, Any]
    twin_dir: str
    result: str
    progress: str


@dataclass(frozen=True)
class TrainingOutcome:
    """What a training process answers (``result.json``): its twin's directory, or its error.

    Attributes
    ----------
    ok
        Whether a twin was trained and saved in ``twin_dir``.
    error, traceback
        Why not, in one line and in full.
    input_error
        The error is the user's input or the world's (a :class:`DigitwinError`, whose message
        says what to do) rather than a bug.
    warnings
        What the training warned the user about, one line each.
    """

    ok: bool
    twin_dir: str | None = None
    id: str | None = None
    error: str | None = None
    traceback: str | None = None
    input_error: bool = False
    warnings: tuple[str, ...] = ()

    def write(self, path: Path) -> None:
        _write_json(path, dataclasses.asdict(self))

    @classmethod
    def read(cls, path: Path) -> TrainingOutcome | None:
        """The outcome in ``path``, or ``None`` if there is none (the process died first)."""
        record = read_json(path)
        if not record:
            return None
        fields = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in record.items() if k in fields}
        known["warnings"] = tuple(known.get("warnings") or ())
        try:
            return cls(**known)
        except TypeError:  # no "ok": not an outcome this code wrote
            return None


@dataclass(eq=False)
class _Job:
    """A training in progress."""

    number: int
    worker: _Worker
    version: int
    n_points: int
    run_uids: list[str]
    twin_dir: Path
    started: float  # epoch seconds
    started_monotonic: float
    study: tuple[str, str] | None = None  # (storage, study name) when searches are kept


class Trainer:
    """The background half of a TwinCallback; holds no reference to the callback itself.

    Requests come from any thread (:meth:`request`, cheap). Everything else — debouncing,
    launching, cancelling, collecting trainings — happens in the monitor thread, which is the
    only writer of the training state. It writes that state under ``_cond`` in short sections
    (the slow parts, writing the data and loading a twin, run outside it) so that :meth:`wait`
    always sees a consistent picture.
    """

    def __init__(
        self,
        buffer: ScanBuffer,
        policy: RetrainPolicy,
        fit_options: dict[str, Any],
        work_dir: str | os.PathLike | None,
        prewarm: bool,
    ) -> None:
        self.buffer = buffer
        self.policy = policy
        self.fit_options = fit_options
        self.prewarm = bool(prewarm)
        self._own_dir = work_dir is None
        self._owner_lock: Any = None
        if work_dir is None:
            remove_stale_work_dirs()
            self.work_dir = Path(tempfile.mkdtemp(prefix=f"digitwin-callback-{os.getpid()}-"))
            self._owner_lock = _hold_owner_lock(self.work_dir)
        else:
            self.work_dir = Path(work_dir).resolve()
            self.work_dir.mkdir(parents=True, exist_ok=True)

        # Requests, from any thread: the request counter only grows; the monitor remembers
        # the last one it handled. A forced request (retrain()) trains even without new data.
        self._request_lock = threading.Lock()
        self._requests = 0
        self._forced = 0  # number of the latest forced request
        self._requested_at = 0.0
        self._reason = ""
        self._wake = threading.Event()

        # Training state: written by the monitor thread under _cond.
        self._cond = threading.Condition()
        self._handled = 0
        self._job: _Job | None = None
        self._spare: _Worker | None = None
        self.current: tuple[DigitalTwin | None, int, Path | None] = (None, -1, None)
        self._attempted = -1  # buffer version of the latest training started
        # Why no twin of the newest data asked for will come (a failure, too few points).
        self._blocker: str | None = None
        self._blocker_state = "waiting"
        # The buffer's DataKeyError behind the blocker, if that is why (wait() raises it), and
        # the latest one logged (each is logged once).
        self._blocker_error: DataKeyError | None = None
        self._logged_key_error: DataKeyError | None = None
        self._restarts_in_row = 0
        self._trainings = self._failures = self._cancelled = 0
        # The warnings the latest training relayed (relay_warnings: not told twice in a row).
        self._told: frozenset[str] = frozenset()
        # Trainings numbered before this callback (by a session it continues: from_catalog).
        self._numbered = 0
        # The status, and whether its message counts the points buffered (then status()
        # writes it anew with the count of now: the buffer grows between publications).
        self._published = (TwinStatus("idle", "no training asked for yet"), False)

        # Processes: registered and killed under _procs_lock, so none escapes close().
        self._procs_lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._n_workers = 0
        self._closing = threading.Event()
        self._closed = False
        self._tf_import: threading.Thread | None = None

        self._thread = threading.Thread(target=self._run, name="digitwin-twin-monitor", daemon=True)
        self._thread.start()
        self._preimport_tensorflow()

    def restore(
        self, twin: DigitalTwin | None, directory: Path | None, *, up_to_date: bool, numbered: int
    ) -> None:
        """Continue an earlier session: its twin as the current one, numbering after its own.

        Called before the callback is handed out (no training can be running).
        """
        with self._cond:
            self._numbered = int(numbered)
            if twin is not None:
                # A twin elsewhere is never removed when a newer one replaces it (as one in
                # the temporary work directory would be).
                kept = directory if (directory is not None and not self._own_dir) else None
                version = self.buffer.version if up_to_date else 0
                self.current = (twin, version, kept)
                learned = "the points buffered" if up_to_date else "part of the points buffered"
                self._publish(
                    "ready",
                    f"twin {twin.id[:8]} restored (it learned {learned})",
                    twin_id=twin.id,
                    twin_version=version,
                )
            self._cond.notify_all()

    # -- any thread -----------------------------------------------------------------------------

    def request(self, reason: str, *, force: bool = False) -> None:
        """Ask for a training (debounced). Cheap: called from the RunEngine's thread."""
        with self._request_lock:
            self._requests += 1
            if force:
                self._forced = self._requests
            self._requested_at = time.monotonic()
            self._reason = reason
        self._wake.set()

    def status(self) -> TwinStatus:
        status, counts_points = self._published
        n_points = self.buffer.n_points
        changes: dict[str, Any] = {
            "n_points": n_points,
            "buffer_version": self.buffer.version,
        }
        if counts_points:
            changes["message"] = self._few_points_message(n_points)
        job = self._job
        if job is not None:
            progress = read_json(job.worker.directory / "progress.json")
            if progress:
                changes["trials_finished"] = progress.get("finished")
                changes["trials_total"] = progress.get("total")
        return dataclasses.replace(status, **changes)

    def wait(self, timeout: float | None) -> DigitalTwin:
        target = self.buffer.version
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        with self._cond:
            twin, version, _ = self.current
            if twin is not None and version >= target:
                return twin
            job = self._job
            if not self._pending() and not (job is not None and job.version >= target):
                self.request("wait() was called")
            while True:
                twin, version, _ = self.current
                if twin is not None and version >= target:
                    return twin
                if self._closing.is_set():
                    raise RuntimeError("the TwinCallback is closed; no new twin will come")
                if self._job is None and not self._pending():
                    error = self._blocker_error
                    if error is not None:
                        raise DataKeyError(
                            f"no twin of the data buffered: {error}",
                            run_uid=error.run_uid,
                            data_keys=error.data_keys,
                        )
                    raise RuntimeError(
                        "no twin of the data buffered: "
                        f"{self._blocker_text() or 'no training is running or asked for'}"
                    )
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"no twin of buffer version {target} within {timeout:g} s; "
                        f"status: {self.status()}"
                    )
                # The monitor notifies on every change; the periodic wake-up is a backstop.
                self._cond.wait(1.0 if remaining is None else min(remaining, 1.0))

    def close(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + max(0.0, float(timeout))
        with self._procs_lock:
            if self._closed:
                return
            self._closed = True
            self._closing.set()
            workers = list(self._workers)
        self._wake.set()
        _kill_groups(workers, grace=min(_GRACE, max(0.0, deadline - time.monotonic())))
        with self._procs_lock:
            self._workers.clear()
        if self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            job, self._job, self._spare = self._job, None, None
            if job is not None:
                self._cancelled += 1
                logger.info("TwinCallback: closed while training #%d ran", job.number)
            self._publish("closed", "no more trainings", pid=None)
            self._cond.notify_all()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            if self._owner_lock is not None:
                self._owner_lock.close()  # releases the lock
        else:
            for worker in workers:
                shutil.rmtree(worker.directory, ignore_errors=True)

    # -- the monitor thread ---------------------------------------------------------------------

    def _pending(self) -> bool:
        return self._requests != self._handled

    def _run(self) -> None:
        while not self._closing.is_set():
            try:
                timeout = self._step()
            except Exception as exc:
                # A bug here must neither go unnoticed nor end the monitor (and with it every
                # later training): log it, show it, and look again in a moment.
                logger.exception("the TwinCallback monitor hit an error")
                with self._cond:
                    self._publish("error", "the monitor hit an error; see the log", error=exc)
                    self._cond.notify_all()
                timeout = 1.0
            self._wake.wait(timeout)
            self._wake.clear()

    def _step(self) -> float | None:
        """Do what is due; return how long to sleep (None: until woken)."""
        job = self._job
        if job is not None and job.worker.process.poll() is not None:
            self._finish(job)
            job = None
        with self._request_lock:
            requests, forced = self._requests, self._forced
            requested_at, reason = self._requested_at, self._reason
        if requests == self._handled:
            return _POLL if job is not None else None
        force = forced > self._handled
        enough = self.buffer.n_points >= self.policy.min_points
        if enough:
            self._ensure_spare()
        left = requested_at + self.policy.debounce - time.monotonic()
        if left > 0:
            if job is None:
                with self._cond:
                    self._publish("waiting", f"training in {left:.1f} s ({reason})")
            return min(left, _POLL) if job is not None else left
        version = self.buffer.version
        if job is not None:
            if version <= job.version:  # the running training already has all the data
                self._mark_handled(requests)
                return _POLL
            if not (self.policy.restart and self._restarts_in_row < self.policy.max_restarts):
                return _POLL  # the next training starts when this one ends
            self._cancel(job, "new data arrived")
            self._restarts_in_row += 1
        if version == self._attempted and not force:
            self._mark_handled(requests)  # nothing new since the latest training
            return None
        if not enough:
            key_error = self.buffer.key_error
            with self._cond:
                self._handled = requests
                if key_error is not None:
                    # Too few points because a run's keys did not fit: that is what to fix.
                    self._block("error", f"no points from the latest run: {key_error}")
                    self._blocker_error = key_error
                    self._publish(*self._settled(), error=key_error)
                else:
                    self._block("waiting", _FEW_POINTS)
                    self._publish(*self._settled())
                self._cond.notify_all()
            if key_error is not None and key_error is not self._logged_key_error:
                self._logged_key_error = key_error
                logger.error("TwinCallback: %s", key_error)
            return None
        self._launch(requests)
        return _POLL

    def _mark_handled(self, requests: int) -> None:
        with self._cond:
            self._handled = requests
            if self._job is None:
                self._publish(*self._settled())
            self._cond.notify_all()

    def _settled(self) -> tuple[str, str]:
        """State and message when nothing runs or waits."""
        if self._blocker is not None:
            return self._blocker_state, self._blocker
        twin, version, _ = self.current
        if twin is not None:
            return "ready", f"twin {twin.id[:8]} of buffer version {version} is ready"
        return "idle", "no training asked for yet"

    def _blocker_text(self) -> str | None:
        if self._blocker is _FEW_POINTS:
            return self._few_points_message(self.buffer.n_points)
        return self._blocker

    def _few_points_message(self, n: int) -> str:
        """Why there is no training, when the points buffered were too few for one."""
        if n < self.policy.min_points:
            return (
                f"waiting for data: {n} points buffered, training starts from "
                f"{self.policy.min_points} (RetrainPolicy.min_points)"
            )
        return f"{n} points buffered, enough to train at the next request (a run's end, retrain())"

    def _block(self, state: TwinState, reason: str) -> None:
        """Record (under _cond) why the data asked for will get no twin for now."""
        self._blocker, self._blocker_state, self._blocker_error = reason, state, None

    def _launch(self, requests: int) -> None:
        worker = self._take_spare() or self._start_worker()
        if worker is None:  # closing
            return
        number = self._numbered + self._trainings + 1
        version = self.buffer.version
        try:
            job, message = self._prepare(worker, number)
            version = job.version
            # Pickle travels through the pipe only (as multiprocessing would send it).
            pickle.dump(message, worker.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            worker.process.stdin.close()
        except Exception as exc:
            # E.g. the process died before taking the job, or the disk is full. Record it like
            # a failed training, so that the same request is not retried in a loop.
            logger.exception("TwinCallback: could not start training #%d", number)
            self._discard(worker)
            with self._cond:
                self._handled = requests
                self._attempted = version
                self._trainings += 1
                self._failures += 1
                self._block("error", f"training #{number} could not start: {exc}")
                self._publish(*self._settled(), error=exc, pid=None)
                self._cond.notify_all()
            return
        with self._cond:
            self._job = job
            self._handled = requests
            self._attempted = version
            self._trainings += 1
            self._blocker = self._blocker_error = None
            self._publish(
                "training",
                f"training #{number} on {job.n_points} points of {len(job.run_uids)} run(s)",
                started=job.started,
                pid=worker.process.pid,
            )
            self._cond.notify_all()
        logger.info(
            "TwinCallback: training #%d on %d points (buffer version %d), process %d",
            number,
            job.n_points,
            version,
            worker.process.pid,
        )
        # Which training runs, for a session that continues this one after a crash
        # (TwinCallback.from_catalog): its number, and its study, left with running trials.
        with contextlib.suppress(OSError):
            _write_json(
                self.work_dir / RUNNING_TRAINING,
                {
                    "number": number,
                    "study_name": job.study[1] if job.study is not None else None,
                    "pid": os.getpid(),
                    "started": job.started,
                },
            )
        # A spare during the training too: if new data cancel this one, the next starts warm.
        self._ensure_spare()

    def _prepare(self, worker: _Worker, number: int) -> tuple[_Job, TrainingJob]:
        """Write the data for ``worker`` and compose its job message."""
        snapshot = self.buffer.snapshot()
        version = int(snapshot.attrs["buffer_version"])
        run_uids = list(dict.fromkeys(snapshot["run_uid"].values.tolist()))
        data_path = worker.directory / "data.nc"
        # netCDF, not pickle, for data at rest; the scipy engine needs no extra library.
        with atomic_path(data_path) as path:
            snapshot.to_netcdf(path, engine="scipy")
        twin_dir = self.work_dir / f"twin-{number:04d}"
        options = dict(self.fit_options)
        if "storage" in options:
            # A study holds one data set: every training needs a study of its own.
            base = options.get("study_name") or "twin-callback"
            options["study_name"] = f"{base}-{number}-{uuid.uuid4().hex[:8]}"
        previous = self.current[0]
        strategy = options.pop("strategy", None) or SearchStrategy()
        warm_start = _warm_start(previous, strategy.warm_start, options)
        options["strategy"] = replace(strategy, warm_start=None)
        # Set before the first point (and never changed): the snapshot's names are these.
        layout = self.buffer.layout
        if layout is None:
            raise RuntimeError("the buffer has points but no layout (a bug)")
        provenance = {
            **dict(options.pop("provenance", None) or {}),
            "run_uids": run_uids,
            "buffer_version": version,
            "warm_start_from": previous.id if previous is not None else None,
            "trained_by": "bluesky_digitwin.callbacks.TwinCallback",
            # What a session continuing this one (from_catalog) reads the runs with.
            "data_keys": dict(layout.keys),
            "stream": self.buffer.stream,
        }
        message = TrainingJob(
            data=str(data_path),
            features=tuple(layout.features),
            target=layout.target,
            options=options,
            warm_start=warm_start,
            provenance=provenance,
            twin_dir=str(twin_dir),
            result=str(worker.directory / "result.json"),
            progress=str(worker.directory / "progress.json"),
        )
        job = _Job(
            number=number,
            worker=worker,
            version=version,
            n_points=int(snapshot.sizes["point"]),
            run_uids=run_uids,
            twin_dir=twin_dir,
            started=time.time(),
            started_monotonic=time.monotonic(),
            study=(
                (os.fspath(options["storage"]), options["study_name"])
                if isinstance(options.get("storage"), (str, os.PathLike))
                else None
            ),
        )
        return job, message

    def _finish(self, job: _Job) -> None:
        """Collect a training whose process has exited: swap in its twin, or keep its error."""
        worker = job.worker
        code = worker.process.wait()
        (self.work_dir / RUNNING_TRAINING).unlink(missing_ok=True)
        # A training that crashed may have left search workers behind in its group.
        _signal_group(worker.process, signal.SIGKILL)
        self._forget(worker)
        outcome = TrainingOutcome.read(worker.directory / "result.json")
        twin, error = None, None
        if outcome is not None and outcome.ok:
            try:
                twin = DigitalTwin.load(outcome.twin_dir)
            except Exception as exc:
                error = f"the trained twin could not be loaded: {type(exc).__name__}: {exc}"
        elif outcome is not None:
            error = str(outcome.error)
            # Bad data or options: the one line logged below says what to do. Anything else
            # is a bug, and its traceback is what a report needs.
            logger.log(
                logging.DEBUG if outcome.input_error else logging.ERROR,
                "TwinCallback: training #%d failed:\n%s",
                job.number,
                outcome.traceback,
            )
        else:
            error = f"the training process exited with code {code} and no result" + (
                f"; its output ended with:\n{_tail(worker.directory / 'worker.log')}"
            )
        if outcome is not None:
            self._told = relay_warnings(job.number, outcome.warnings, self._told)
        if twin is None:
            # Logged before the status says so: whoever waits for the status finds the line.
            logger.error("TwinCallback: training #%d failed: %s", job.number, error)
        elapsed = time.monotonic() - job.started_monotonic
        with self._cond:
            self._job = None
            self._restarts_in_row = 0
            old_dir = self.current[2]
            if twin is not None:
                self.current = (twin, job.version, job.twin_dir)
                self._blocker = self._blocker_error = None
                self._publish(
                    "ready",
                    f"twin {twin.id[:8]} trained on {job.n_points} points in {elapsed:.1f} s "
                    f"(validation RMSE {twin.validation_rmse:.4g})",
                    twin_id=twin.id,
                    twin_version=job.version,
                    pid=None,
                )
            else:
                self._failures += 1
                self._block("error", f"training #{job.number} failed: {error}")
                self._publish(*self._settled(), error=error, pid=None)
            self._cond.notify_all()
        if twin is not None:
            logger.info("TwinCallback: %s", self._published[0].message)
            if self._own_dir and old_dir is not None:
                shutil.rmtree(old_dir, ignore_errors=True)  # only the current twin is kept
        shutil.rmtree(worker.directory, ignore_errors=True)
        if self.buffer.n_points >= self.policy.min_points:
            self._ensure_spare()

    def _cancel(self, job: _Job, reason: str) -> None:
        _kill_groups([job.worker], grace=_GRACE)
        if job.study is not None:
            close_abandoned_study(*job.study)
        (self.work_dir / RUNNING_TRAINING).unlink(missing_ok=True)
        self._forget(job.worker)
        shutil.rmtree(job.worker.directory, ignore_errors=True)
        shutil.rmtree(job.twin_dir, ignore_errors=True)
        with self._cond:
            self._job = None
            self._cancelled += 1
            self._publish("waiting", f"training #{job.number} cancelled: {reason}", pid=None)
            self._cond.notify_all()
        logger.info("TwinCallback: training #%d cancelled: %s", job.number, reason)

    def _publish(
        self, state: TwinState, message: str, *, error: Any = None, **changes: Any
    ) -> None:
        """Replace the status (under _cond): a new frozen object, so readers need no lock."""
        if error is not None:
            changes["last_error"] = (
                f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
            )
        counts_points = message is _FEW_POINTS
        if counts_points:
            message = self._few_points_message(self.buffer.n_points)
        status = dataclasses.replace(
            self._published[0],
            state=state,
            message=message,
            trainings=self._trainings,
            failures=self._failures,
            cancelled=self._cancelled,
            **changes,
        )
        self._published = (status, counts_points)  # one assignment: readers need no lock

    def _preimport_tensorflow(self) -> None:
        # Loading the first twin imports TensorFlow: seconds of CPU in this process, part of
        # them holding the GIL (loading its shared libraries), which stalls the RunEngine's
        # thread too. With prewarm that happens now, when the callback is made, typically
        # before any scan, rather than in the middle of one when the first twin arrives.
        if self.prewarm and self._tf_import is None and "tensorflow" not in sys.modules:
            self._tf_import = threading.Thread(
                target=_import_tensorflow, name="digitwin-tf-import", daemon=True
            )
            self._tf_import.start()

    # -- processes ------------------------------------------------------------------------------

    def _ensure_spare(self) -> None:
        if not self.prewarm:
            return
        spare = self._spare
        if spare is not None and spare.process.poll() is None:
            return
        if spare is not None:
            self._discard(spare)
        self._spare = self._start_worker()

    def _take_spare(self) -> _Worker | None:
        spare, self._spare = self._spare, None
        if spare is not None and spare.process.poll() is not None:
            self._discard(spare)  # it died waiting (e.g. TensorFlow failed to start)
            return None
        return spare

    def _start_worker(self) -> _Worker | None:
        with self._procs_lock:
            if self._closing.is_set():
                return None
            self._n_workers += 1
            directory = self.work_dir / f"worker-{self._n_workers:04d}"
            directory.mkdir(parents=True, exist_ok=True)
            # Our module path and TensorFlow's quiet start (its search workers get the same).
            env = child_environment(
                {
                    # The search's temporary files (journal, trial models) land in the worker's
                    # directory, which goes away with it even when the process is killed.
                    "TMPDIR": str(directory),
                    "DIGITWIN_PREWARM": "1" if self.prewarm else "0",
                    "DIGITWIN_WORKER_DIR": str(directory),
                }
            )
            with open(directory / "worker.log", "wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-c", _BOOT],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    # Not the parent's directory: `python -c` puts the working directory first
                    # on sys.path, and a source checkout there would shadow the installed
                    # package (whose plans/ and callbacks/ live elsewhere in a checkout).
                    cwd=directory,
                    close_fds=True,
                    # Its own process group (and session): killpg reaches its search workers,
                    # and a Ctrl-C meant for the RunEngine does not reach it.
                    start_new_session=os.name == "posix",
                )
            worker = _Worker(number=self._n_workers, directory=directory, process=process)
            self._workers.add(worker)
        return worker

    def _discard(self, worker: _Worker) -> None:
        _kill_groups([worker], grace=0.0)
        self._forget(worker)
        shutil.rmtree(worker.directory, ignore_errors=True)

    def _forget(self, worker: _Worker) -> None:
        with self._procs_lock:
            self._workers.discard(worker)


# -- temporary work directories: removed by close(), or by the next callback ---------------------

#: In a temporary work directory: a file its callback holds locked (flock) for as long as it
#: lives. The kernel releases the lock when the process ends, however it ends (even SIGKILL).
_OWNER_LOCK = "owner.lock"


def _hold_owner_lock(directory: Path) -> Any:
    """Lock ``directory``'s owner file for this process's lifetime; return the open file."""
    if os.name != "posix":  # pragma: no cover - no flock: such directories are never removed
        return None
    import fcntl

    # Locked before it gets its name, so that no other process sees it unlocked.
    staging = directory / f".{_OWNER_LOCK}"
    handle = open(staging, "w")  # held open (and locked) until close()
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    os.replace(staging, directory / _OWNER_LOCK)
    return handle


def remove_stale_work_dirs(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove the temporary work directories of TwinCallbacks whose process has ended.

    A callback removes its own directory in :meth:`TwinCallback.close` (also at interpreter
    exit); a process that is killed (SIGKILL, out of memory, power) cannot. Every new
    callback with a temporary directory therefore clears those its dead predecessors left:
    directories whose owner lock (``owner.lock``) no process holds any more. Directories of
    running callbacks, and any without an owner lock, are left alone.

    Parameters
    ----------
    root
        Where to look (default: :func:`tempfile.gettempdir`).

    Returns
    -------
    list of Path
        The directories removed.
    """
    if os.name != "posix":  # pragma: no cover
        return []
    import fcntl

    removed = []
    for directory in Path(root or tempfile.gettempdir()).glob("digitwin-callback-*"):
        try:
            handle = open(directory / _OWNER_LOCK)
        except OSError:  # no owner lock (not ours to judge), or not readable
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its callback is alive
            shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
        logger.info("TwinCallback: removed %s, left by a process that ended", directory)
    return removed


def _kill_groups(workers: list[_Worker], grace: float) -> None:
    """SIGTERM the process groups, give them ``grace`` seconds, then SIGKILL; reap leaders."""
    live = [w for w in workers if w.process.poll() is None]
    for worker in live:
        _signal_group(worker.process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for worker in live:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(max(0.0, deadline - time.monotonic()))
    for worker in workers:
        # Also when the leader has exited: its search workers may still be there.
        _signal_group(worker.process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(5.0)
        if worker.process.stdin is not None:
            with contextlib.suppress(OSError):
                worker.process.stdin.close()


def close_abandoned_study(storage: str, study_name: str) -> None:
    """Mark the trials a cancelled training left running as failed.

    Nobody continues that study (each training has its own), so its killed trials would show
    as running for ever in the dashboard; they are not retried.
    """
    try:
        import optuna

        from bluesky_digitwin.surrogate.storage import open_storage

        opened = open_storage(storage, heartbeat_interval=None)
        study = optuna.load_study(study_name=study_name, storage=opened)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                opened.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    except Exception:  # the study may not exist yet; never let this stop the callback
        logger.debug("TwinCallback: could not close study %r", study_name, exc_info=True)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    if os.name != "posix":  # pragma: no cover - no process groups: the leader only
        with contextlib.suppress(OSError):
            process.kill()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _warm_start(
    previous: DigitalTwin | None, given: Any, options: Mapping[str, Any]
) -> list[dict[str, Any]] | Any:
    """Hyperparameters to try first: the previous twin's networks', best first."""
    if previous is None:
        return given
    n_trials = int(options.get("n_trials", 30))
    params: list[dict[str, Any]] = []
    for member in previous.metadata.get("members", []):
        candidate = dict(member["params"])
        if candidate not in params:
            params.append(candidate)
    # Leave room for new trials: at most a third of the search is spent on old shapes.
    return params[: max(1, n_trials // 3)]


def _import_tensorflow() -> None:
    try:
        import bluesky_digitwin.tensorflow_runtime  # noqa: F401
    except Exception:  # loading the twin will say what is wrong
        logger.debug("importing TensorFlow ahead of the first twin failed", exc_info=True)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically: readers see the old file or the new one."""
    with atomic_path(path) as staging:
        staging.write_text(json.dumps(obj, default=str))


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


# -- the training process ----------------------------------------------------------------------


def run_training_process() -> None:
    """Entry point of a training process: start up, take one job from stdin, fit, save, exit."""
    watch_parent(_end_orphaned_training)
    with contextlib.suppress(OSError, AttributeError):
        os.nice(_NICENESS)
    startup_error = None
    if os.environ.get("DIGITWIN_PREWARM") == "1":
        try:
            # The slow part of starting (TensorFlow), done before the job arrives.
            import bluesky_digitwin.tensorflow_runtime  # noqa: F401
        except BaseException:
            startup_error = traceback.format_exc()
    try:
        job = pickle.load(sys.stdin.buffer)
    except EOFError:
        return  # the parent went away, or closed without a job for this process
    result_path = Path(job.result)
    if startup_error is not None:
        last = startup_error.strip().splitlines()[-1]
        TrainingOutcome(ok=False, error=last, traceback=startup_error).write(result_path)
        return
    progress_path = Path(job.progress)

    def progress(p: Any) -> None:
        _write_json(progress_path, dataclasses.asdict(p))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            import xarray as xr

            with xr.open_dataset(job.data, engine="scipy") as opened:
                data = opened.load()
            options = dict(job.options)
            strategy = options.pop("strategy", None) or SearchStrategy()
            twin = DigitalTwin.fit(
                data,
                list(job.features),
                job.target,
                **options,
                strategy=replace(strategy, warm_start=job.warm_start),
                provenance=job.provenance,
                progress=progress,
            )
            twin.save(job.twin_dir)
            outcome = TrainingOutcome(ok=True, twin_dir=job.twin_dir, id=twin.id)
        except BaseException as exc:
            outcome = TrainingOutcome(
                ok=False,
                error=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(),
                input_error=isinstance(exc, DigitwinError),
            )
    # The user's business (e.g. a smaller ensemble than asked for), not the libraries' plans.
    relayed = [w for w in caught if not issubclass(w.category, _QUIET_WARNINGS)]
    lines = tuple(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in relayed))
    dataclasses.replace(outcome, warnings=lines).write(result_path)
    # The callback swaps the twin in once this process has exited: not a second later.
    skip_exit_collection()


def relay_warnings(number: int, messages: Sequence[str], told: frozenset[str]) -> frozenset[str]:
    """Log the warnings of training ``number``; return them, for the next training's call.

    A warning the previous training gave word for word (``told``) is logged at DEBUG: a long
    session that retrains on the same lines is told of, e.g., a jump inside one step once, not
    at every training. Any change in its words (another line, other numbers) is news.
    """
    for message in messages:
        level = logging.DEBUG if message in told else logging.WARNING
        logger.log(level, "TwinCallback: training #%d: %s", number, message)
    return frozenset(messages)


def _end_orphaned_training() -> None:
    """End this process group: its parent died without stopping it (e.g. SIGKILL)."""
    # Nobody is left to clean up after this training: its files go with it.
    directory = os.environ.get("DIGITWIN_WORKER_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
    # Only as the leader of its own group (as the callback starts it): never signal a group
    # this process merely belongs to.
    if hasattr(os, "killpg") and os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(1)
