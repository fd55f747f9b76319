"""TwinCallback: keep a digital twin trained on what the RunEngine measures, in the background.

The RunEngine calls its callbacks in its own thread, one document after the other, so a callback
that takes time slows the scan, and a callback that raises aborts it. :class:`TwinCallback`
therefore does as little as possible in the document path: it hands the document to its
:class:`~bluesky_digitwin.buffer.ScanBuffer` and, when its :class:`RetrainPolicy` says so (a
run stopped, N new points), sets a flag and returns. Everything else happens elsewhere:

- a *monitor thread* debounces the requests, takes a snapshot of the buffer and starts,
  cancels and collects trainings;
- each training runs :meth:`DigitalTwin.fit <bluesky_digitwin.twin.DigitalTwin.fit>` in a
  separate *process* (a fresh Python interpreter in its own process group, at a lower CPU
  priority). A process cannot stall the RunEngine's Python thread, and it can be cancelled: the
  monitor kills its whole process group, search workers included. The data go to it as a
  netCDF file, the twin comes back as a directory saved by :meth:`DigitalTwin.save`.

``cb.twin`` is the newest finished twin; it is replaced by a single attribute assignment, so a
plan reading it gets either the old twin or the new one, never half of one.

Why a fresh interpreter (``subprocess``) rather than ``multiprocessing``: the "spawn" start
method re-imports the user's ``__main__`` module in the child, and a bluesky script without an
``if __name__ == "__main__"`` guard would run its plans a second time there. A daemonic
``multiprocessing`` child could not start the search's own worker processes either.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import pickle
import re
import warnings
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bluesky.callbacks.core import CallbackBase

from bluesky_digitwin.buffer import DataKeyError, ScanBuffer
from bluesky_digitwin.errors import DigitwinInputError
from bluesky_digitwin.fit_settings import MOVED_KEYWORDS, SETTINGS, check_moved, check_settings
from bluesky_digitwin.names import check_name
from bluesky_digitwin.surrogate.search_settings import is_whole
from bluesky_digitwin.twin import DigitalTwin

from .status import RetrainPolicy, TwinStatus
from .training import RUNNING_TRAINING, Trainer, close_abandoned_study, read_json

__all__ = ["RetrainPolicy", "TwinCallback", "TwinStatus"]

logger = logging.getLogger(__name__)

#: A saved twin in a work directory, or what an interrupted save of one left beside it.
_TWIN_DIR = re.compile(r"^\.?twin-(\d+)(?:$|\.)")
#: A study of a training: <study_name>-<number>-<random>.
_STUDY_NAME = re.compile(r"^(?P<base>.+)-(?P<number>\d+)-[0-9a-f]{8}$")
#: Keyword arguments of DigitalTwin.fit that the callback sets itself.
_OWNED_OPTIONS = frozenset({"data", "features", "target", "progress"})
_FIT_OPTIONS = frozenset(
    name
    for name, parameter in inspect.signature(DigitalTwin.fit).parameters.items()
    if parameter.kind is not inspect.Parameter.VAR_KEYWORD
) - {"cls"}


class TwinCallback(CallbackBase):
    """A bluesky callback that keeps a :class:`~bluesky_digitwin.twin.DigitalTwin` trained.

    Subscribe it to a RunEngine (``RE.subscribe(cb)``). Every document goes to :attr:`buffer`
    (a :class:`~bluesky_digitwin.buffer.ScanBuffer`); when the :class:`RetrainPolicy` asks for
    it, a twin is trained in the background on everything buffered, and :attr:`twin` becomes
    the new twin when it is ready. The next training starts from the previous twin's best
    hyperparameters (``warm_start``), and records the run uids and buffer version it learned
    from in ``twin.metadata["provenance"]``.

    Without ``features`` and ``target``, the buffer takes them from the first run, as the plan
    and the detectors hint them (see :class:`~bluesky_digitwin.buffer.ScanBuffer`): the scanned
    motors' fields and the one hinted detector field, under their data keys. A run that does
    not say which its keys are, or lacks a key everywhere, gives no points and one
    :class:`~bluesky_digitwin.buffer.DataKeyError` (a ``ValueError``) naming the data keys it
    has: warned, logged, shown in :attr:`status` while there are too few points to train, and
    raised by :meth:`wait`.

    The document path never blocks and never raises (errors are logged with :mod:`logging`);
    training errors are logged and kept in :attr:`status`. Runs that are paused and resumed
    are buffered as the RunEngine emits them: a point measured again after the rewind to the
    last checkpoint is kept twice (it is a second, real measurement, with a new event uid).

    Parameters
    ----------
    features, target, keys, stream, include_simulated
        As for :class:`~bluesky_digitwin.buffer.ScanBuffer` (names, data keys, the stream of
        points, whether runs marked ``data_origin: "simulated"`` are learned from); features
        and target left out are taken from the first run's hints.
    policy
        When to train (:class:`RetrainPolicy`; default: after each run, debounced by 1 s, from
        20 points on).
    fit_options
        Keyword arguments of :meth:`DigitalTwin.fit <bluesky_digitwin.twin.DigitalTwin.fit>`
        (``n_trials``, ``n_workers``, ``seed``, ``space``, ``train_config``, ...); they travel
        to the training process by pickle, as ``multiprocessing`` would send them. With a
        ``storage``, each training makes a new study named ``<study_name>-<n>-<random>``. A
        ``warm_start`` is used until there is a previous twin; a ``provenance`` is merged into
        the callback's.
    work_dir
        Where trainings write their inputs and twins. By default a temporary directory, removed
        by :meth:`close`, which keeps only the current twin; a directory given here keeps every
        twin (``twin-0001``, ``twin-0002``, ...).
    prewarm
        Import TensorFlow in this process now, in a background thread (loading a twin needs
        it; better before the scans than in the middle of one), and from the first training
        on keep one training process started ahead of need (Python, TensorFlow and the
        package imported: about 0.7 GB of memory), so that a training begins the moment it
        is asked for instead of seconds later. ``False`` starts each training process when it
        is needed and leaves TensorFlow to the loading of the first twin.

    Examples
    --------
    >>> cb = TwinCallback(("T", "H"), "M", keys={"T": "mag_temperature", "H": "mag_field",
    ...                   "M": "mag_moment"}, fit_options={"n_trials": 20})
    >>> RE.subscribe(cb)
    >>> for field in (1e4, 2e4, 3e4):
    ...     RE(bps.mv(mag.field, field))
    ...     RE(scan([mag], mag.temperature, 10, 60, 51))
    >>> twin = cb.wait(timeout=600)  # the twin of all three scans
    >>> print(cb.status)

    Any detector, any standard plan: without names, the plan says what is what.

    >>> cb = TwinCallback()
    >>> RE.subscribe(cb)
    >>> RE(grid_scan([det4], motor1, -1, 1, 11, motor2, -1, 1, 11))
    >>> cb.wait(timeout=600).features
    ('motor1', 'motor2')
    """

    def __init__(
        self,
        features: Iterable[str] | str | None = None,
        target: str | None = None,
        *,
        keys: Mapping[str, str] | None = None,
        stream: str = "primary",
        include_simulated: bool = False,
        policy: RetrainPolicy | None = None,
        fit_options: Mapping[str, Any] | None = None,
        work_dir: str | os.PathLike | None = None,
        prewarm: bool = True,
    ) -> None:
        super().__init__()
        self.buffer = ScanBuffer(
            features, target, keys=keys, stream=stream, include_simulated=include_simulated
        )
        self.policy = policy if policy is not None else RetrainPolicy()
        if not isinstance(self.policy, RetrainPolicy):
            raise DigitwinInputError(f"policy must be a RetrainPolicy, got {policy!r}")
        self._trainer = Trainer(
            self.buffer, self.policy, _check_fit_options(fit_options), work_dir, prewarm
        )
        self._every_n = self.policy.every_n_points
        self._n_at_request = 0
        # Runs the trainer's close() when the callback is garbage-collected or, at the latest,
        # when the interpreter exits (weakref.finalize registers itself with atexit) without
        # keeping the callback alive.
        self._finalizer = weakref.finalize(self, self._trainer.close)

    @classmethod
    def from_catalog(
        cls,
        catalog: Any,
        uids: Sequence[str] | str | None = None,
        *,
        query: Any = None,
        twin: str | os.PathLike | DigitalTwin | None = None,
        features: Iterable[str] | str | None = None,
        target: str | None = None,
        keys: Mapping[str, str] | None = None,
        stream: str = "primary",
        policy: RetrainPolicy | None = None,
        fit_options: Mapping[str, Any] | None = None,
        work_dir: str | os.PathLike | None = None,
        prewarm: bool = True,
    ) -> TwinCallback:
        """A callback that continues an earlier session: its runs from Tiled, its newest twin.

        After a restart (a kernel that crashed, a new shift), the measured runs are in Tiled
        and the twins in the earlier callback's ``work_dir``. This callback starts where that
        one stopped:

        - **The buffer** holds the measured runs named by ``uids`` or matching ``query``, read
          back with :func:`~bluesky_digitwin.tiled.select_runs` and
          :func:`~bluesky_digitwin.tiled.run_documents` and taken by
          :meth:`ScanBuffer.replay <bluesky_digitwin.buffer.ScanBuffer.replay>`: the same
          points the live documents gave. Simulated runs never: a uid naming one is refused,
          a query leaves them out. A run seen again live (the same run uid) adds no point
          twice; a run Tiled holds in part adds only the points it lacked.
        - **The twin** is the newest saved in ``work_dir`` (the highest ``twin-NNNN`` that
          loads), or ``twin``: :attr:`twin` is ready at once, and the next training starts its
          search from its hyperparameters (``provenance["warm_start_from"]`` names it). When
          it learned exactly the points buffered (the same runs, as many points), it is the
          twin of the buffer; otherwise a training is asked for at once (with
          ``policy.on_stop``, as the runs' stops would have), warm-started from it. Without a
          saved twin, the first training starts cold.
        - **The search** continues: trainings are numbered after the earlier session's
          (``twin-NNNN`` and, with a ``storage`` in ``fit_options``, the studies
          ``<study_name>-<n>-<random>``), and without a ``study_name`` the earlier studies'
          name is kept. Each training still has a study of its own (a study belongs to one
          set of points, and the buffer has grown), so *continuing* means starting from what
          the last twin learned, not adding trials to an older study. A training the earlier
          session was running when it died (recorded in the work directory) is closed: its
          study's running trials are marked failed, as a cancelled training's are.

        Parameters
        ----------
        catalog
            A :class:`~bluesky_digitwin.tiled.TwinCatalog`, a Tiled node holding ``measured``,
            or a Tiled catalog of bluesky runs. Only read: nothing is written to it.
        uids, query
            The measured runs to start from: run uids (full or partial), or a Tiled query on
            their start documents (e.g. ``Key("sample") == "ErCo2"``). One of them.
        twin
            A saved twin's directory (or a :class:`~bluesky_digitwin.twin.DigitalTwin`) to
            start from instead of the newest in ``work_dir``.
        features, target, keys
            As for the constructor. Left out, those of the twin (its data keys, as its
            callback recorded them), or, without a twin, the first run's hints.
        stream, policy, fit_options, work_dir, prewarm
            As for the constructor. Give the earlier session's ``work_dir`` to continue its
            numbering and find its twins, and the same ``storage`` in ``fit_options`` to keep
            its studies together.

        Returns
        -------
        TwinCallback
            Not yet subscribed: ``RE.subscribe(cb)``.

        Raises
        ------
        DigitwinInputError
            Neither or both of ``uids`` and ``query``; a uid that no run has; a query that
            matches no measured run, or a catalog holding no measured run at all
            (simulated ones only); ``twin`` that holds no twin; names that differ from the
            twin's; runs that give no point (a :class:`DataKeyError` listing their data keys).
            :class:`~bluesky_digitwin.tiled.DataOriginError` (a ``DigitwinInputError``) when
            a uid names a simulated run. Nothing is ever written to Tiled, and after an error
            nothing is left in ``work_dir`` (a directory made for the callback is removed).

        Examples
        --------
        >>> catalog = TwinCatalog.connect("https://tiled.facility.org/api/v1/metadata/bl")
        >>> cb = TwinCallback.from_catalog(
        ...     catalog, query=Key("sample") == "ErCo2", work_dir="erco2-twins",
        ...     fit_options={"n_trials": 20, "storage": "erco2-twins/searches.journal"})
        >>> cb.twin  # the newest twin of the earlier session, at once
        >>> RE.subscribe(cb)
        """
        from bluesky_digitwin.tiled import run_documents, select_runs

        # Everything that can be refused is looked at before anything is made or written.
        if (uids is None) == (query is None):
            raise DigitwinInputError(
                "name the measured runs to start from: uids=[...] or query=..., e.g. "
                "query=Key('sample') == 'ErCo2' (with from tiled.queries import Key); one of them"
            )
        options = _check_fit_options(fit_options)
        directory = None if work_dir is None else Path(work_dir).resolve()
        previous, previous_dir, numbered = _earlier_twin(directory, twin)
        abandoned = _abandoned_training(directory)
        if abandoned is not None and isinstance(abandoned.get("number"), int):
            numbered = max(numbered, abandoned["number"])
        if previous is not None:
            if features is None and target is None and keys is None:
                features, target = previous.features, previous.target
                recorded = previous.metadata.get("provenance", {}).get("data_keys")
                keys = dict(recorded) if isinstance(recorded, Mapping) else None
            _check_same_names(previous, previous_dir, features, target)
            if "storage" in options and options.get("study_name") is None:
                searched = previous.metadata.get("search") or {}
                earlier = _STUDY_NAME.match(str(searched.get("study_name")))
                if earlier is not None:
                    options["study_name"] = earlier["base"]
        runs = select_runs(catalog, uids, query=query)
        existed = directory is not None and directory.exists()

        cb = cls(
            features,
            target,
            keys=keys,
            stream=stream,
            policy=policy,
            fit_options=options,
            work_dir=work_dir,
            prewarm=prewarm,
        )
        try:
            buffer = cb.buffer
            for run in runs:
                buffer.replay(run_documents(run, stream, lambda: buffer.keys.values()))
            if buffer.n_points == 0:
                error = buffer.key_error
                if error is not None:
                    raise DataKeyError(
                        f"none of the {len(runs)} measured run(s) gave a point: {error}",
                        run_uid=error.run_uid,
                        data_keys=error.data_keys,
                    )
                raise DigitwinInputError(
                    f"none of the {len(runs)} measured run(s) gave a point: stream {stream!r} "
                    "has no events with the data keys named; check stream= and keys="
                )
            if previous is not None:
                _check_same_names(previous, previous_dir, buffer.features, buffer.target)
        except BaseException:
            cb.close()
            if not existed and directory is not None:
                with contextlib.suppress(OSError):
                    directory.rmdir()  # made for this callback, and empty
            raise
        if abandoned is not None:
            _close_abandoned(abandoned, options, cb.work_dir)
        learned = previous.metadata.get("provenance", {}) if previous is not None else {}
        up_to_date = (
            previous is not None
            and set(learned.get("run_uids") or ()) == set(buffer.run_uids)
            and previous.metadata.get("data", {}).get("n_points") == buffer.n_points
        )
        cb._trainer.restore(previous, previous_dir, up_to_date=up_to_date, numbered=numbered)
        cb._n_at_request = buffer.n_points
        logger.info(
            "TwinCallback: %d points of %d measured run(s) read from Tiled; %s",
            buffer.n_points,
            len(buffer.run_uids),
            f"twin {previous.id[:8]} restored from {previous_dir or 'the twin given'}"
            if previous is not None
            else "no saved twin: the first training starts cold",
        )
        if not up_to_date and cb.policy.on_stop:
            cb._trainer.request("restored from Tiled, with points the twin did not learn")
        return cb

    # -- the document path: append and return -------------------------------------------------

    def __call__(self, name: str, doc: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
        """Take one document: buffer it, and tell the monitor when the policy asks to train."""
        try:
            self.buffer.ingest(name, doc)
        except Exception:
            # Warnings turned into errors (the buffer has taken the document before it warns),
            # or a bug: the RunEngine must not see it, an exception in a callback aborts the
            # scan. Logged; the training policy below still hears of the document.
            logger.exception("TwinCallback ignored an error while taking a %r document", name)
        try:
            if name == "stop":
                self._n_at_request = self.buffer.n_points
                if self.policy.on_stop:
                    self._trainer.request("a run stopped")
            elif self._every_n is not None and (name == "event" or name == "event_page"):
                n = self.buffer.n_points
                if n - self._n_at_request >= self._every_n or n < self._n_at_request:
                    self._n_at_request = n
                    self._trainer.request(f"{self._every_n} new points")
        except Exception:  # a bug: logged, never raised into the RunEngine
            logger.exception("TwinCallback ignored an error after taking a %r document", name)
        return name, doc

    # -- the twin -------------------------------------------------------------------------------

    @property
    def twin(self) -> DigitalTwin | None:
        """The newest finished twin, or None."""
        return self._trainer.current[0]

    @property
    def twin_version(self) -> int:
        """The buffer version the current twin was trained on (-1 if there is none)."""
        return self._trainer.current[1]

    @property
    def status(self) -> TwinStatus:
        """What is happening now (:class:`TwinStatus`)."""
        return self._trainer.status()

    @property
    def work_dir(self) -> Path:
        """Where trainings write their inputs and twins."""
        return self._trainer.work_dir

    def wait(self, timeout: float | None = None) -> DigitalTwin:
        """Block until a twin trained on at least the data buffered now is ready, and return it.

        Asks for a training if none is under way or asked for. Do not call it from a callback:
        the RunEngine's thread would wait.

        Raises
        ------
        TimeoutError
            No such twin within ``timeout`` seconds.
        DataKeyError
            Too few points, and the latest run was not learned from for its data keys (the
            message lists those it has): no twin can come of it.
        RuntimeError
            The training failed (its error is in the message) and no newer one is pending,
            there are fewer points than ``policy.min_points``, or the callback is closed.
        """
        return self._trainer.wait(timeout)

    def retrain(self) -> None:
        """Ask for a training on everything buffered (debounced like any request).

        Trains even if the current twin already learned the same data (e.g. to retry after a
        failure, or after subscribing late and feeding old documents).
        """
        self._trainer.request("retrain() was called", force=True)

    # -- the end --------------------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Stop the background work: kill training processes, join the monitor thread.

        Idempotent; also runs when the interpreter exits. The current twin stays usable.
        """
        self._finalizer.detach()
        self._trainer.close(timeout)

    def __enter__(self) -> TwinCallback:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        status = self.status
        names = f"{self.buffer.target}({', '.join(self.buffer.features)})"
        if self.buffer.layout is None:
            names = "names from the first run's hints"
        return (
            f"<TwinCallback {names}: "
            f"{status.state}, {status.n_points} points, twin {status.twin_id or 'none'}>"
        )


# -- continuing an earlier session (from_catalog) -------------------------------------------------


def _earlier_twin(
    work_dir: Path | None, twin: str | os.PathLike | DigitalTwin | None
) -> tuple[DigitalTwin | None, Path | None, int]:
    """The twin to start from, its directory, and the last training number in ``work_dir``.

    The newest twin of ``work_dir`` is the highest ``twin-NNNN`` that loads; one that does not
    (damaged) is passed over with a warning, as a restart should not fail for it.
    """
    numbers: set[int] = set()
    if work_dir is not None and work_dir.is_dir():
        for path in work_dir.iterdir():
            match = _TWIN_DIR.match(path.name)
            if match is not None and path.is_dir():
                numbers.add(int(match[1]))
    numbered = max(numbers, default=0)
    if isinstance(twin, DigitalTwin):
        return twin, None, numbered
    if twin is not None:
        path = Path(twin).resolve()
        return DigitalTwin.load(path), path, numbered
    for number in sorted(numbers, reverse=True):
        path = work_dir / f"twin-{number:04d}"  # type: ignore[operator]
        # DigitalTwin.load finishes (or rolls back) a save that was interrupted.
        try:
            return DigitalTwin.load(path), path, numbered
        except DigitwinInputError as exc:
            if path.exists():
                message = f"TwinCallback: passing over {path}, which cannot be loaded: {exc}"
                logger.warning(message)
                warnings.warn(message, stacklevel=3)
    return None, None, numbered


def _check_same_names(
    twin: DigitalTwin,
    directory: Path | None,
    features: Iterable[str] | str | None,
    target: str | None,
) -> None:
    """Refuse names other than the twin's: a warm start from another quantity means nothing."""
    if features is not None:
        features = (features,) if isinstance(features, str) else tuple(features)
    if (features is None or features == twin.features) and (
        target is None or target == twin.target
    ):
        return
    where = f" in {directory}" if directory is not None else ""
    given = f"{target or '?'}({', '.join(features or ('?',))})"
    raise DigitwinInputError(
        f"the twin{where} learned {twin.target}({', '.join(twin.features)}), but the callback "
        f"would learn {given}; name the features, target and keys as the earlier session did "
        "(or leave them out to take the twin's), or give twin= of these names"
    )


def _abandoned_training(work_dir: Path | None) -> dict[str, Any] | None:
    """The training a session that died was running in ``work_dir`` (its RUNNING_TRAINING)."""
    if work_dir is None:
        return None
    record = read_json(work_dir / RUNNING_TRAINING)
    if not isinstance(record, dict):
        return None
    pid = record.get("pid")
    if isinstance(pid, int) and pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return record  # its session is gone
        except OSError:
            pass  # alive, another user's
        logger.warning(
            "TwinCallback: process %d, which may still be training in %s, is alive; its "
            "training is left alone (one callback per work directory)",
            pid,
            work_dir,
        )
        return None
    return record


def _close_abandoned(record: Mapping[str, Any], options: Mapping[str, Any], work_dir: Path) -> None:
    """Close the study of a training a dead session left running, and forget it."""
    study_name, storage = record.get("study_name"), options.get("storage")
    if isinstance(study_name, str) and isinstance(storage, (str, os.PathLike)):
        close_abandoned_study(os.fspath(storage), study_name)
        logger.info(
            "TwinCallback: training #%s of the earlier session was cut short; the running "
            "trials of its study %r are marked failed",
            record.get("number"),
            study_name,
        )
    (work_dir / RUNNING_TRAINING).unlink(missing_ok=True)


def _check_fit_options(fit_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Fail at construction, not in the background, for options that can never work."""
    if fit_options is None:
        return {}
    if not isinstance(fit_options, Mapping):
        raise DigitwinInputError(f"fit_options must be a dict, got {type(fit_options).__name__}")
    options = dict(fit_options)
    owned = sorted(_OWNED_OPTIONS & options.keys())
    if owned:
        raise DigitwinInputError(
            f"fit_options cannot set {', '.join(owned)}: the callback sets them (progress is "
            "in cb.status)"
        )
    try:
        check_moved({name: options[name] for name in options.keys() & MOVED_KEYWORDS.keys()})
    except DigitwinInputError as exc:
        raise DigitwinInputError(f"fit_options: {exc}") from None
    unknown = sorted(options.keys() - _FIT_OPTIONS)
    if unknown:
        raise DigitwinInputError(
            f"fit_options has {', '.join(map(repr, unknown))}, which DigitalTwin.fit does not "
            f"take (it takes {', '.join(sorted(_FIT_OPTIONS - _OWNED_OPTIONS))})"
        )
    try:
        # The settings objects checked their own values when they were made.
        check_settings(**{name: options[name] for name in options.keys() & SETTINGS.keys()})
    except DigitwinInputError as exc:
        raise DigitwinInputError(f"fit_options: {exc}") from None
    problems = [problem for name, value in options.items() if (problem := _bad_value(name, value))]
    if problems:
        raise DigitwinInputError(
            f"fit_options cannot work: {'; '.join(problems)} (every training would fail)"
        )
    if options.get("study_name") is not None:
        # It starts the name of every training's study (<name>-<n>-<random>).
        check_name(options["study_name"], "fit_options study_name")
    try:
        pickle.dumps(options)
    except Exception as exc:
        raise DigitwinInputError(
            f"fit_options must be picklable to reach the training process: {exc}"
        ) from None
    return options


def _bad_value(name: str, value: Any) -> str | None:
    """Why ``value`` of the fit option ``name`` can never work, whatever the data; else None.

    The same limits as DigitalTwin.fit and its search, checked here, in the user's call,
    rather than once per training in the background.
    """

    if name == "n_trials" and not (is_whole(value) and value >= 1):
        return f"{name} must be a whole number >= 1, got {value!r}"
    if name == "n_workers" and value is not None and not (is_whole(value) and value >= 1):
        # 0 would wait for workers elsewhere, which cannot know each training's new study.
        return f"n_workers must be None (one per core) or a whole number >= 1, got {value!r}"
    if name == "seed" and value is not None and not (is_whole(value) and value >= 0):
        return f"seed must be None or a whole number >= 0, got {value!r}"
    return None
