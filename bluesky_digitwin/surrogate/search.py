"""The hyperparameter search: Optuna TPE with asynchronous successive halving (ASHA).

Like Optuna itself, the pieces are separate and replaceable: the search space
(:class:`SearchSpace`), the sampler, the pruner and the storage. By default the workers are
processes on this machine that share a journal file; any Optuna RDB URL works too, and then
workers on other machines join with :func:`~bluesky_digitwin.surrogate.workers.run_worker`
(``digitwin worker``): the study records everything they need (:data:`STUDY_RECORD`), including
where its training data lives. Each finished trial stores its network as an Optuna artifact (a
``.keras`` file, no pickle), so the twin is built from the best trials wherever they ran.

Workers that die cost their trial only (:mod:`~bluesky_digitwin.surrogate.recovery`): database
storages get Optuna's heartbeats, the journal a check of the worker processes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

from bluesky_digitwin.atomic_files import atomic_path
from bluesky_digitwin.data import DigitwinInputError, TrainingData
from bluesky_digitwin.data_sources import ArtifactSource, DataSource, TiledRunsSource
from bluesky_digitwin.names import check_name
from bluesky_digitwin.processes import (
    THREADS_ENV,
    child_environment,
    forward_stderr,
    python_command,
)
from bluesky_digitwin.redaction import redact, redact_url
from bluesky_digitwin.scan_lines import slow_axis_lines
from bluesky_digitwin.surrogate.network import Scaling
from bluesky_digitwin.surrogate.recovery import (
    FINISHED,
    WORKER_ATTR,
    StopWhenFinished,
    count_finished,
    exit_with_parent,
    recover_orphaned_trials,
    retry_trial,
    worker_identity,
)
from bluesky_digitwin.surrogate.search_settings import (
    HEARTBEAT_INTERVAL,
    RemoteWorkers,
    SearchStrategy,
    check_heartbeat,
    check_split,
)
from bluesky_digitwin.surrogate.search_space import SearchSpace, default_batch_sizes
from bluesky_digitwin.surrogate.study_record import STUDY_RECORD, ArtifactLocation, StudyRecord
from bluesky_digitwin.surrogate.training import TrainConfig

__all__ = [
    "STUDY_RECORD",
    "AfterSearch",
    "Progress",
    "SearchResult",
    "SearchSpace",
    "SplitData",
    "default_batch_sizes",
    "make_objective",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "optimize_until",
    "run_search",
]

logger = logging.getLogger(__name__)

MODEL_ARTIFACT = "model_artifact_id"


#: Work shared out to every process that searched, once no trial runs any more: called with the
#: split, the complete trials (best first), this process's part and the number of parts. What it
#: returns crosses processes by pickle (plain values, arrays: no model objects).
AfterSearch = Callable[["SplitData", list[optuna.trial.FrozenTrial], int, int], Any]


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
        cls, data: TrainingData, validation_fraction: float, seed: int, holdout: str = "points"
    ) -> SplitData:
        """Hold out points to choose models on.

        ``holdout="lines"`` holds out whole scan lines (e.g. every point of the M(T) sweep at
        one field), chosen among the interior lines of the slow axis: what the twin is for is
        interpolating *between* lines, and random points of measured lines do not test that.
        ``"points"`` holds out random points; ``"auto"`` uses lines when the data are scan
        lines (:func:`~bluesky_digitwin.scan_lines.slow_axis_lines`) with at least one interior
        line, else points.
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
        scaling = Scaling.from_data(data.x, data.y)
        return cls(
            x_train=scaling.scale_x(data.x[tr]),
            y_train=scaling.scale_y(data.y[tr]),
            x_val=scaling.scale_x(data.x[val]),
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


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running search, given to the ``progress`` callback."""

    finished: int
    total: int
    pruned: int
    best_value: float | None
    elapsed: float


@dataclass
class SearchResult:
    """What a search produced: the study, where its trial models are, and the data split.

    Call :meth:`cleanup` when done with the trial models: it removes the search's temporary
    directory (worker inputs, and the journal and artifacts when no storage was given).
    """

    study: optuna.Study
    artifact_store: Any
    split: SplitData
    storage_description: str
    wall_time: float
    best_trials: list[optuna.trial.FrozenTrial] = field(default_factory=list)
    temp_dir: Path | None = None
    #: What ``run_search(beside=...)`` returned (None without it).
    beside: Any = None
    #: What ``run_search(after=...)`` returned in each process, by part (None without it).
    after: list[Any] | None = None

    @property
    def scaling(self) -> Scaling:
        return self.split.scaling

    def cleanup(self) -> None:
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def open_storage(
    storage: str | os.PathLike | optuna.storages.BaseStorage,
    *,
    heartbeat_interval: int | None = HEARTBEAT_INTERVAL,
) -> Any:
    """Open a storage: a database URL (``postgresql://...``, ``sqlite:///...``), a journal file
    path, or a ready Optuna storage object.

    A database storage gets Optuna's heartbeats every ``heartbeat_interval`` seconds (``None``:
    none): the trial of a worker that stops beating is failed after twice that time and queued
    again with the same hyperparameters. Credentials belong in the environment (``PGPASSWORD``,
    ``~/.pgpass``), not in the URL; a password in the URL is never shown or logged
    (:func:`~bluesky_digitwin.redaction.redact`).
    """
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    text = os.fspath(storage)
    if "://" in text:
        check_heartbeat(heartbeat_interval)
        with warnings.catch_warnings():
            # Heartbeats have been "experimental" in Optuna since 2.9; they are what we need.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return optuna.storages.RDBStorage(
                    text,
                    heartbeat_interval=heartbeat_interval,
                    heartbeat_stale_trial_callback=(
                        retry_trial if heartbeat_interval is not None else None
                    ),
                )
            except ImportError as exc:
                raise DigitwinInputError(
                    f"no database driver for {redact_url(text)}: {exc}. For PostgreSQL, "
                    "pip install 'bluesky-digitwin[postgres]'"
                ) from None
            except Exception as exc:
                # Say why in one line, and never with the password: SQLAlchemy's messages may
                # quote the URL.
                reason = redact(str(exc).strip().splitlines()[0], url=text)
                raise DigitwinInputError(
                    f"cannot open the storage {redact_url(text)}: {reason}. Check that the "
                    "database server runs and that the user, database and password (from "
                    "PGPASSWORD or ~/.pgpass, not the URL) are right"
                ) from None
    from optuna.storages.journal import JournalFileBackend

    path = Path(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def default_artifact_dir(storage: str | os.PathLike | Any) -> Path:
    if isinstance(storage, (str, os.PathLike)) and "://" not in os.fspath(storage):
        return Path(os.fspath(storage) + ".artifacts")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "bluesky-digitwin" / "artifacts"


@dataclass(frozen=True)
class _WorkerSpec:
    """Everything a worker process needs, as plain values (sent to a fresh interpreter)."""

    storage: str
    study_name: str
    data_dir: str
    scaling: dict
    artifact_dir: str
    space: SearchSpace
    train_config: TrainConfig
    n_trials: int
    seed: int | None
    worker_index: int
    threads: int
    sampler: Any = None
    pruner: Any = None
    heartbeat_interval: int | None = HEARTBEAT_INTERVAL
    after: AfterSearch | None = None
    parts: int = 1


def _after_path(data_dir: str | os.PathLike, part: int) -> Path:
    return Path(data_dir) / f"after-{part}.pickle"


def _ranked_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The complete trials that stored a network, best first."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted((t for t in complete if MODEL_ARTIFACT in t.user_attrs), key=lambda t: t.value)


def _settled_trials(study: optuna.Study, poll: float = 0.2) -> list[optuna.trial.FrozenTrial]:
    """:func:`_ranked_trials` once no trial runs any more (the other processes' last ones).

    A process that ends its share of the search first waits here for the others' last
    trials, since the best trial is known only then. Trials of dead workers are failed as
    :func:`_wait_for_workers` fails them (heartbeats, local processes), so they cannot keep
    it waiting.
    """
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        recover_orphaned_trials(study)
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return _ranked_trials(study)
        time.sleep(poll)


def make_objective(
    split: SplitData,
    space: SearchSpace,
    train_config: TrainConfig,
    artifact_store: Any,
    seed: int | None,
) -> Callable[[optuna.Trial], float]:
    """The search's objective: train the trial's network on ``split``, report each chunk's
    validation loss to the pruner, and return the best (every worker runs this one)."""
    # Imported here: the module must import without TensorFlow for light tools (e.g. the CLI's
    # argument errors) and for the coordinator's progress thread.
    from bluesky_digitwin.surrogate.network import build_mlp
    from bluesky_digitwin.surrogate.population import train_group

    n_points = len(split.y_train) + len(split.y_val)

    def objective(trial: optuna.Trial) -> float:
        # Who runs this trial, so a rerun can tell a trial whose process died (journal storage).
        trial.set_user_attr(WORKER_ATTR, worker_identity(trial.number))
        params = space.suggest(trial, n_points)
        trial_seed = (seed or 0) * 100_003 + trial.number
        model = build_mlp(
            split.x_train.shape[1],
            params["n_layers"],
            params["n_units"],
            l2=params["l2"],
            dropout=params["dropout"],
            activation=params["activation"],
            seed=trial_seed,
        )

        def should_stop(epochs: int, best_losses: np.ndarray, active: np.ndarray) -> list[bool]:
            trial.report(float(best_losses[0]), epochs)
            return [trial.should_prune()]

        # A population of one: the same training as train(), without Keras' per-layer and
        # optimizer overhead, and a graph that is cheaper to trace (benchmarks/RESULTS.md).
        (result,) = train_group(
            [model],
            split.x_train,
            split.y_train,
            split.x_val,
            split.y_val,
            batch_size=params["batch_size"],
            learning_rates=[params["learning_rate"]],
            seeds=[trial_seed],
            config=train_config,
            should_stop=should_stop,
        )
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("epochs_run", result.epochs_run)
        trial.set_user_attr("stopped_by", result.stopped_by)
        trial.set_user_attr("seed", trial_seed)
        if result.stopped_by == "pruned":
            raise optuna.TrialPruned(f"pruned at epoch {result.epochs_run}")
        if not math.isfinite(result.best_loss):
            raise optuna.TrialPruned("training diverged")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"trial-{trial.number}.keras")
            model.save(path)
            artifact_id = optuna.artifacts.upload_artifact(
                artifact_store=artifact_store, file_path=path, study_or_trial=trial
            )
        trial.set_user_attr(MODEL_ARTIFACT, artifact_id)
        return result.best_loss

    return objective


def optimize_until(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_trials: int,
) -> None:
    """Run trials until the study holds ``n_trials`` finished ones (shared by all workers)."""
    recover_orphaned_trials(study)
    if count_finished(study) >= n_trials:
        return
    with warnings.catch_warnings():
        # Optuna calls its experimental fail_stale_trials when heartbeats are on.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(
            objective,
            callbacks=[StopWhenFinished(n_trials)],
            # A trial that raises is recorded as failed; the search goes on with the others.
            catch=(Exception,),
            gc_after_trial=False,
        )


def _wait_for_workers(study: optuna.Study, n_trials: int, poll: float = 2.0) -> None:
    """Train nothing here: wait until other workers have finished ``n_trials`` trials.

    Meanwhile fail and retry the trials of dead workers (heartbeats, and processes on this
    machine), so a killed worker cannot leave the search waiting for ever.
    """
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        recover_orphaned_trials(study)
        if count_finished(study) >= n_trials:
            return
        time.sleep(poll)


def make_sampler(seed: int | None, worker_index: int) -> optuna.samplers.BaseSampler:
    """The paper's sampler (TPE, 10 random trials first), seeded apart for each worker."""
    worker_seed = None if seed is None else seed + worker_index
    return optuna.samplers.TPESampler(seed=worker_seed, n_startup_trials=10)


def make_pruner(train_config: TrainConfig) -> optuna.pruners.BasePruner:
    """The paper's pruner: ASHA (successive halving) on the validation loss by epoch."""
    # Rungs at 20, 60, 180 epochs: a poor trial costs 20 epochs, a mediocre one 60.
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=max(train_config.chunk_epochs, 20), reduction_factor=3
    )


#: What a worker process runs: a fresh interpreter that imports this package and nothing of the
#: caller's. (multiprocessing's "spawn" re-imports the caller's ``__main__``: a user's script
#: without an ``if __name__ == "__main__":`` guard then dies in the worker.)
_WORKER_BOOT = "from bluesky_digitwin.surrogate.search import _worker_main; _worker_main()"


@dataclass
class _Worker:
    """A running worker process and the thread passing its standard error on."""

    process: subprocess.Popen
    stderr: threading.Thread

    def wait(self) -> int:
        code = self.process.wait()
        # Its last lines (an error's traceback) come before the search says it failed.
        self.stderr.join(5.0)
        return code


def _start_worker(spec: _WorkerSpec) -> _Worker:
    """Start a worker in a fresh interpreter; its spec goes through its standard input.

    The spec is plain values, plus the sampler and pruner objects when custom ones were given
    (pickled, as multiprocessing did; :func:`run_search` refuses classes defined in the script,
    which the worker cannot import). It holds no model. The worker's standard error reaches
    ours without TensorFlow's start-up lines; it shares our process group, so a signal to the
    group reaches it too.
    """
    process = subprocess.Popen(
        python_command(_WORKER_BOOT),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_environment({THREADS_ENV: str(spec.threads)}),
        close_fds=True,
    )
    try:
        with process.stdin:
            pickle.dump(spec, process.stdin)
    except BrokenPipeError:
        pass  # it died starting; its standard error says why, and the search goes on
    stderr = forward_stderr(process.stderr, f"digitwin-search-worker-{spec.worker_index}")
    return _Worker(process=process, stderr=stderr)


def _absolute_storage(storage: str | os.PathLike) -> str:
    """A journal path that means the same file in a process started elsewhere."""
    text = os.fspath(storage)
    return text if "://" in text else os.path.abspath(text)


def _worker_main() -> None:
    """Entry point of a worker process (:data:`_WORKER_BOOT`): read the spec, search."""
    exit_with_parent()
    try:
        spec = pickle.load(sys.stdin.buffer)
    except EOFError:
        return  # the search ended before this worker got its spec
    try:
        _search_in_worker(spec)
    except KeyboardInterrupt:
        # Ctrl-C reached the whole process group; the search itself says it was interrupted.
        sys.exit(130)


def _search_in_worker(spec: _WorkerSpec) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(spec.storage, heartbeat_interval=spec.heartbeat_interval)
    study = optuna.load_study(
        study_name=spec.study_name,
        storage=storage,
        sampler=spec.sampler or make_sampler(spec.seed, spec.worker_index),
        pruner=spec.pruner or make_pruner(spec.train_config),
    )
    split = SplitData.load(Path(spec.data_dir), Scaling.from_dict(spec.scaling))
    store = FileSystemArtifactStore(spec.artifact_dir)
    objective = make_objective(split, spec.space, spec.train_config, store, spec.seed)
    optimize_until(study, objective, spec.n_trials)
    if spec.after is not None:
        trials = _settled_trials(study)
        if trials:
            # An error here ends this worker with a traceback; the search's own process then
            # does this part itself.
            output = spec.after(split, trials, spec.worker_index, spec.parts)
            path = _after_path(spec.data_dir, spec.worker_index)
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                pickle.dump(output, f)


def run_search(
    data: TrainingData,
    *,
    n_trials: int = 30,
    n_workers: int | None = None,
    seed: int | None = None,
    storage: str | os.PathLike | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    space: SearchSpace | None = None,
    train_config: TrainConfig | None = None,
    strategy: SearchStrategy | None = None,
    remote: RemoteWorkers | None = None,
    progress: Callable[[Progress], None] | None = None,
    work_dir: str | os.PathLike | None = None,
    beside: Callable[[SplitData], Any] | None = None,
    after: AfterSearch | None = None,
) -> SearchResult:
    """Search hyperparameters of the surrogate on ``data``.

    Parameters
    ----------
    data
        Validated training data (:func:`~bluesky_digitwin.data.prepare_training_data`).
    n_trials
        The number of finished (complete, pruned or failed) trials the study should hold. A
        study that already holds some (same storage and study name) continues from there:
        finished trials are kept, and trials whose worker died are run again.
    n_workers
        Parallel workers on this machine. One runs in this process; the others are spawned
        processes sharing the storage. ``None`` uses one per available core. ``0`` trains
        nothing here: the search waits for workers elsewhere
        (:func:`~bluesky_digitwin.surrogate.workers.run_worker`, ``digitwin worker``) to finish
        the trials, which needs a ``storage`` they can all reach.
    seed
        Makes the split, the sampler and the networks' initialisation repeatable (exactly so with
        one worker; with several, the order in which trials finish depends on timing).
    storage
        A journal file path, a database URL, or an Optuna storage object. ``None`` uses a new
        journal file in a temporary directory.
    study_name
        The study to create or continue; ``None`` makes a new name.
    space, train_config
        Where the search looks (default: :class:`SearchSpace`) and how each trial's network
        trains (default: 500 epochs with early stopping, :class:`TrainConfig`).
    strategy
        How trials are proposed, stopped early and judged: the sampler (TPE) and pruner
        (ASHA), hyperparameters to try first, the held-out share and what is held out
        (:class:`~bluesky_digitwin.surrogate.search_settings.SearchStrategy`).
    remote
        What workers joining from other machines need: where trial models go, where the data
        can be read again, the heartbeat on a database storage
        (:class:`~bluesky_digitwin.surrogate.search_settings.RemoteWorkers`).
    progress
        Called about twice a second with a :class:`Progress`.
    work_dir
        Where worker inputs are written; a temporary directory by default.
    beside
        Work that needs the split but not the search (e.g. training the twin's reference
        networks), called with the :class:`SplitData` in this process while the spawned
        workers search, before this process joins them; what it returns is
        ``SearchResult.beside``. A core that would idle at the end waiting for this work
        after the search is used during it instead.
    after
        Work to share out once the search has ended (e.g. training the twin's networks of the
        best trial's shape), run in every process that searched here (this one and the
        spawned workers, each given its part) as soon as no trial runs any more, instead of
        in this process alone after the workers have exited; what each part returned is
        ``SearchResult.after``. It must pickle (a module-level class or function, not one
        defined in a script), as do its results. A part whose worker failed is done here.
    """
    space = space or SearchSpace()
    train_config = train_config or TrainConfig()
    strategy = strategy or SearchStrategy()
    remote = remote or RemoteWorkers()
    sampler, pruner = strategy.sampler, strategy.pruner
    if study_name is not None:
        check_name(study_name, "study name")
    if n_trials < 1:
        raise DigitwinInputError(f"n_trials must be at least 1, got {n_trials}")
    if n_workers is not None and n_workers < 0:
        raise DigitwinInputError(f"n_workers must be 0 or more, got {n_workers}")
    if n_workers == 0 and storage is None:
        raise DigitwinInputError(
            "n_workers=0 waits for workers elsewhere, which need a storage they can all reach: "
            "give storage (a database URL, or a journal file on a shared disk)"
        )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if n_workers is None:
        n_workers = cores or 1
    n_workers = min(n_workers, n_trials)
    if n_workers > 1:
        for what, obj in (("sampler", sampler), ("pruner", pruner), ("after", after)):
            # Workers are fresh interpreters: they cannot import the caller's script.
            module = getattr(obj, "__module__", None) or type(obj).__module__
            if obj is not None and module == "__main__":
                raise DigitwinInputError(
                    f"the custom {what} {type(obj).__name__} is defined in the script, where "
                    "the search's worker processes cannot import it; define it in a module, "
                    "or use n_workers=1"
                )
    if n_workers > 1 and isinstance(storage, optuna.storages.BaseStorage):
        raise DigitwinInputError(
            "several workers need a storage they can all open: give a journal file path "
            "or a database URL instead of a storage object, or use n_workers=1"
        )

    with contextlib.ExitStack() as on_failure:
        start = time.perf_counter()
        tmp_root = Path(tempfile.mkdtemp(prefix="digitwin-search-", dir=work_dir))
        # On success the caller removes the temporary directory (SearchResult.cleanup) after it
        # has read the trial models; on any failure it goes now.
        on_failure.callback(shutil.rmtree, tmp_root, ignore_errors=True)
        if storage is None:
            storage = tmp_root / "journal.log"
            artifact_dir = tmp_root / "artifacts"
        else:
            artifact_dir = default_artifact_dir(storage)
        storage_obj = open_storage(storage, heartbeat_interval=remote.heartbeat_interval)
        storage_text = (
            redact_url(os.fspath(storage)) if isinstance(storage, (str, os.PathLike)) else "object"
        )
        store = remote.artifact_store or FileSystemArtifactStore(str(_mkdir(artifact_dir)))

        study = optuna.create_study(
            storage=storage_obj,
            study_name=study_name,
            direction="minimize",
            sampler=sampler or make_sampler(seed, 0),
            pruner=pruner or make_pruner(train_config),
            load_if_exists=True,
        )
        split_seed = _claim_study(study, data, seed, strategy.validation_fraction)
        split = SplitData.split(data, strategy.validation_fraction, split_seed, strategy.holdout)
        _record_study(
            study,
            split=split,
            space=space,
            train_config=train_config,
            n_trials=n_trials,
            seed=seed,
            holdout=strategy.holdout,
            store=store,
            data_source=remote.data_source,
            custom=strategy.custom,
        )
        for params in strategy.warm_start_params:
            study.enqueue_trial(dict(params), skip_if_exists=True)

        stop_progress = threading.Event()
        watcher = None
        if progress is not None:
            watcher = threading.Thread(
                target=_watch,
                args=(storage_obj, study.study_name, n_trials, start, progress, stop_progress),
                daemon=True,
                name="digitwin-search-progress",
            )
            watcher.start()
        try:
            processes = []
            if n_workers > 1:
                data_dir = tmp_root / "data"
                split.save(data_dir)
                if not isinstance(remote.artifact_store, (type(None), FileSystemArtifactStore)):
                    raise DigitwinInputError(
                        "several local workers share trial models through a directory; "
                        "use n_workers=1 with a custom artifact store"
                    )
                threads = max(1, (cores or 1) // n_workers)
                for index in range(1, n_workers):
                    spec = _WorkerSpec(
                        storage=_absolute_storage(storage),
                        study_name=study.study_name,
                        data_dir=os.path.abspath(data_dir),
                        scaling=split.scaling.to_dict(),
                        artifact_dir=os.path.abspath(artifact_dir),
                        space=space,
                        train_config=train_config,
                        n_trials=n_trials,
                        seed=seed,
                        worker_index=index,
                        threads=threads,
                        sampler=sampler,
                        pruner=pruner,
                        heartbeat_interval=remote.heartbeat_interval,
                        after=after,
                        parts=n_workers,
                    )
                    processes.append(_start_worker(spec))
                if "tensorflow" not in sys.modules:
                    # This process trains too: share the cores with the workers.
                    os.environ.setdefault(THREADS_ENV, str(threads))
            beside_result = None
            parts = max(1, len(processes) + 1)
            after_results: list[Any] = [None] * parts
            settled: list[optuna.trial.FrozenTrial] = []
            search_end = None
            try:
                if beside is not None:
                    beside_result = beside(split)
                if n_workers == 0:
                    logger.info(
                        "waiting for workers: digitwin worker --storage %s --study %s",
                        storage_text,
                        study.study_name,
                    )
                    _wait_for_workers(study, n_trials)
                else:
                    objective = make_objective(split, space, train_config, store, seed)
                    optimize_until(study, objective, n_trials)
                if after is not None:
                    settled = _settled_trials(study)
                    search_end = time.perf_counter()
                    if settled:
                        after_results[0] = after(split, settled, 0, parts)
            except BaseException:
                # Interrupted or broken here: the workers must not search on for nobody.
                for worker in processes:
                    worker.process.terminate()
                raise
            finally:
                for worker in processes:
                    worker.wait()
            failed_workers = [w for w in processes if w.process.returncode != 0]
            if failed_workers:
                logger.warning("%d search worker(s) exited with an error", len(failed_workers))
            for part in range(1, parts if settled else 1):
                path = _after_path(tmp_root / "data", part)
                if path.exists():
                    with open(path, "rb") as f:
                        after_results[part] = pickle.load(f)
                else:
                    logger.warning("search worker %d did not do its part after the search", part)
                    after_results[part] = after(split, settled, part, parts)
        finally:
            stop_progress.set()
            if watcher is not None:
                watcher.join()
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        complete = [t for t in complete if MODEL_ARTIFACT in t.user_attrs]
        if not complete:
            states = [t.state.name for t in study.get_trials(deepcopy=False)]
            raise RuntimeError(
                f"no trial of study {study.study_name!r} completed ({len(states)} trials: "
                f"{', '.join(sorted(set(states)))}); see the log for the failures"
            )
        best = _ranked_trials(study)
        if storage_text.endswith("journal.log") and tmp_root in Path(storage_text).parents:
            storage_text = "temporary journal"
        result = SearchResult(
            study=study,
            artifact_store=store,
            split=split,
            storage_description=storage_text,
            wall_time=(search_end or time.perf_counter()) - start,
            best_trials=best,
            temp_dir=tmp_root,
            beside=beside_result,
            after=after_results if after is not None else None,
        )
        on_failure.pop_all()
        return result


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _claim_study(
    study: optuna.Study, data: TrainingData, seed: int | None, validation_fraction: float
) -> int:
    """Record what a study learns from; refuse to continue a study made for other data.

    Returns the seed of the validation split, the same for every run of one study.
    """
    attrs = study.user_attrs
    digest = data.sha256()
    if "data_sha256" in attrs:
        if attrs["data_sha256"] != digest:
            raise DigitwinInputError(
                f"study {study.study_name!r} already holds trials for other data "
                f"(features {attrs.get('features')}, target {attrs.get('target')!r}); "
                "give a new study name, or the same data to continue it"
            )
        return int(attrs["split_seed"])
    split_seed = int(seed) if seed is not None else int(np.random.default_rng().integers(2**31))
    study.set_user_attr("data_sha256", digest)
    study.set_user_attr("features", list(data.features))
    study.set_user_attr("target", data.target)
    study.set_user_attr("n_points", data.n_points)
    study.set_user_attr("split_seed", split_seed)
    study.set_user_attr("validation_fraction", validation_fraction)
    return split_seed


def _record_study(
    study: optuna.Study,
    *,
    split: SplitData,
    space: SearchSpace,
    train_config: TrainConfig,
    n_trials: int,
    seed: int | None,
    holdout: str,
    store: Any,
    data_source: TiledRunsSource | None,
    custom: bool,
) -> None:
    """Write into the study what a worker joining from anywhere needs (:data:`STUDY_RECORD`).

    Written once per study (a study searches one space on one data set); only the number of
    trials asked for is updated by each run. JSON only: storages keep attributes as JSON.
    """
    record = StudyRecord.from_json(study.user_attrs.get(STUDY_RECORD))
    if record is None:
        data: DataSource = (
            data_source
            if data_source is not None
            else ArtifactSource(_upload_split(study, split, store))
        )
        record = StudyRecord(
            space=space,
            train_config=train_config,
            holdout=holdout,
            seed=seed,
            scaling=split.scaling.to_dict(),
            data=data,
            artifacts=describe_artifact_store(store),
            # Sampler and pruner objects cannot be recorded: workers elsewhere use TPE and
            # ASHA unless given the same objects (run_worker's sampler and pruner).
            custom_sampler_or_pruner=custom,
        )
    study.set_user_attr(STUDY_RECORD, replace(record, n_trials=n_trials).to_json())


def _upload_split(study: optuna.Study, split: SplitData, store: Any) -> str:
    """Store the scaled training and validation arrays as an artifact of the study."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "training-data.npz")
        np.savez(
            path, x_train=split.x_train, y_train=split.y_train, x_val=split.x_val, y_val=split.y_val
        )
        return optuna.artifacts.upload_artifact(
            artifact_store=store, file_path=path, study_or_trial=study
        )


def describe_artifact_store(store: Any) -> ArtifactLocation:
    """What tells a worker where trial models go: a directory path, or the store's kind."""
    if isinstance(store, FileSystemArtifactStore):
        return ArtifactLocation("filesystem", os.path.abspath(store._base_path))
    return ArtifactLocation(type(store).__name__)


def _watch(
    storage: Any,
    study_name: str,
    total: int,
    start: float,
    report: Callable[[Progress], None],
    stop: threading.Event,
) -> None:
    """Poll the storage (so trials of every worker count) and report progress."""
    last = None
    while True:
        stopping = stop.wait(0.5)
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
            trials = study.get_trials(deepcopy=False, states=FINISHED)
            finished = count_finished(study)
        except Exception:  # a transient storage error must not end the search
            logger.debug("progress poll failed", exc_info=True)
            continue
        values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        snapshot = Progress(
            finished=finished,
            total=total,
            pruned=sum(t.state == TrialState.PRUNED for t in trials),
            best_value=min(values) if values else None,
            elapsed=time.perf_counter() - start,
        )
        key = (snapshot.finished, snapshot.best_value)
        if stopping or key != last:
            last = key
            try:
                report(snapshot)
            except Exception:  # a broken progress display must not end the search
                logger.debug("progress callback failed", exc_info=True)
        if stopping:
            return


def trial_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """Full hyperparameters of a finished trial (including the implied l2=0, dropout=0)."""
    params = dict(trial.params)
    params.setdefault("l2", 0.0)
    params.setdefault("dropout", 0.0)
    params.setdefault("regularization", "none")
    # Studies from before the activation was searched trained ReLU networks.
    params.setdefault("activation", "relu")
    return params
