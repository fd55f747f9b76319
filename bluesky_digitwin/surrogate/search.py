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

This module runs a search (:func:`run_search`); its parts live beside it, as Optuna keeps
samplers, pruners and storages apart: the held-out split (:mod:`.split`), what one trial does
and how trials are proposed, stopped and ranked (:mod:`.trials`), storages and artifact stores
(:mod:`.storage`), and the worker processes on this machine (:mod:`.local_workers`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

from bluesky_digitwin.data import DigitwinInputError, TrainingData
from bluesky_digitwin.data_sources import ArtifactSource, DataSource, TiledRunsSource
from bluesky_digitwin.names import check_name
from bluesky_digitwin.processes import THREADS_ENV
from bluesky_digitwin.redaction import redact_url
from bluesky_digitwin.surrogate.network import Scaling
from bluesky_digitwin.surrogate.recovery import FINISHED, UnclaimedTrials, count_finished
from bluesky_digitwin.surrogate.search_settings import RemoteWorkers, SearchStrategy
from bluesky_digitwin.surrogate.search_space import SearchSpace, default_batch_sizes
from bluesky_digitwin.surrogate.study_record import STUDY_RECORD, StudyRecord
from bluesky_digitwin.surrogate.training import TrainConfig

# The search's parts, each in its own module; importable from here as they always were.
from .local_workers import AfterSearch, WorkerSpec, after_path, start_worker
from .split import SplitData
from .storage import absolute_storage, default_artifact_dir, describe_artifact_store, open_storage
from .trials import (
    MODEL_ARTIFACT,
    make_objective,
    make_pruner,
    make_sampler,
    optimize_until,
    ranked_trials,
    settled_trials,
    trial_params,
    wait_for_workers,
)

__all__ = [
    "MODEL_ARTIFACT",
    "STUDY_RECORD",
    "AfterSearch",
    "OtherTrainingError",
    "Progress",
    "SearchResult",
    "SearchSpace",
    "SplitData",
    "default_artifact_dir",
    "default_batch_sizes",
    "make_objective",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "optimize_until",
    "run_search",
    "trial_params",
]

logger = logging.getLogger(__name__)


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
        trains (default: at most 250 epochs with early stopping, :class:`TrainConfig`;
        the paper's 500 with ``TrainConfig.paper()``).
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
        ``SearchResult.after``. It is an :class:`AfterSearch`: it must pickle (a module-level
        class, not one defined in a script), and it writes and reads its spawned workers'
        results itself (no pickle). A part whose worker failed is done here.
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
        split_seed = _claim_study(
            study, data, seed, strategy.validation_fraction, train_config, strategy.fourier_scale
        )
        split = SplitData.split(
            data,
            strategy.validation_fraction,
            split_seed,
            strategy.holdout,
            fourier_scale=strategy.fourier_scale,
        )
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
                    spec = WorkerSpec(
                        storage=absolute_storage(storage),
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
                    processes.append(start_worker(spec))
                if "tensorflow" not in sys.modules:
                    # This process trains too: share the cores with the workers.
                    os.environ.setdefault(THREADS_ENV, str(threads))
            beside_result = None
            parts = max(1, len(processes) + 1)
            after_results: list[Any] = [None] * parts
            settled: list[optuna.trial.FrozenTrial] = []
            search_end = None
            # Trials no process has claimed yet, watched from here until the search settles.
            unclaimed = UnclaimedTrials()
            try:
                if beside is not None:
                    beside_result = beside(split)
                if n_workers == 0:
                    logger.info(
                        "waiting for workers: digitwin worker --storage %s --study %s",
                        storage_text,
                        study.study_name,
                    )
                    wait_for_workers(study, n_trials)
                else:
                    objective = make_objective(split, space, train_config, store, seed)
                    optimize_until(study, objective, n_trials, unclaimed=unclaimed)
                if after is not None:
                    settled = settled_trials(study, unclaimed=unclaimed)
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
                path = after_path(tmp_root / "data", part)
                if path.exists():
                    after_results[part] = after.load_part(path)
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
        best = ranked_trials(study)
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


class OtherTrainingError(DigitwinInputError):
    """A study refuses a rerun whose training differs from the one its trials had.

    Its workers elsewhere train by the study's record, and ASHA compares trials at equal
    epochs, so new trials would not compare with the old. The message says which settings
    differ and the ``TrainConfig`` that continues the study; a front end can say the same in
    its own terms (``digitwin fit`` names its flags) from the attributes.

    Attributes
    ----------
    study_name
        The study refused.
    searched, given
        Each differing ``TrainConfig`` field: its value in the study's trials, and in this run.
    """

    def __init__(self, study_name: str, searched: dict[str, Any], given: dict[str, Any]):
        self.study_name = study_name
        self.searched = searched
        self.given = given
        fields = ", ".join(f"{name}={value!r}" for name, value in searched.items())
        super().__init__(self.message(f"TrainConfig({fields})"))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its parts, not from the message (e.g. sent back from a process).
        return type(self), (self.study_name, self.searched, self.given)

    def message(self, continue_with: str) -> str:
        """The refusal, with ``continue_with`` as the settings that continue the study."""
        differences = ", ".join(
            f"{name} {value!r}, not {self.given[name]!r}" for name, value in self.searched.items()
        )
        return (
            f"study {self.study_name!r} was searched with other training settings "
            f"({differences}): its trials would not compare with new ones; continue it with "
            f"the same settings ({continue_with}), or give a new study name"
        )


def _other_training(
    study_name: str, record: StudyRecord, train_config: TrainConfig
) -> OtherTrainingError:
    before, now = asdict(record.train_config), asdict(train_config)
    changed = [name for name in before if before[name] != now[name]]
    return OtherTrainingError(
        study_name, {name: before[name] for name in changed}, {name: now[name] for name in changed}
    )


def _claim_study(
    study: optuna.Study,
    data: TrainingData,
    seed: int | None,
    validation_fraction: float,
    train_config: TrainConfig,
    fourier_scale: float | None = None,
) -> int:
    """Record what a study learns from; refuse to continue a study made for other data, other
    network inputs (Fourier features or not: its trials' networks take those inputs) or other
    training settings as they apply to its data (its workers elsewhere train by its record, and
    ASHA compares trials at the same epoch counts), before any work on the split.

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
        # Studies from before Fourier features have no such attribute: they had none.
        searched_with = attrs.get("fourier_scale")
        if searched_with != fourier_scale:
            raise DigitwinInputError(
                f"study {study.study_name!r} was searched with fourier_scale={searched_with}, "
                f"not {fourier_scale}: its trials' networks take other inputs; continue it "
                "with the same setting, or give a new study name"
            )
        record = StudyRecord.from_json(attrs.get(STUDY_RECORD))
        # Compared as they apply to this data, so that a default changed since the study began
        # (e.g. reference_points, which leaves a small table alone) does not refuse it. The
        # whole table's size: never fewer points than the split trains on, so a setting that
        # changes nothing here changes nothing there either.
        if record is not None and record.train_config.as_trained(
            data.n_points
        ) != train_config.as_trained(data.n_points):
            raise _other_training(study.study_name, record, train_config)
        return int(attrs["split_seed"])
    split_seed = int(seed) if seed is not None else int(np.random.default_rng().integers(2**31))
    study.set_user_attr("data_sha256", digest)
    study.set_user_attr("features", list(data.features))
    study.set_user_attr("target", data.target)
    study.set_user_attr("n_points", data.n_points)
    study.set_user_attr("split_seed", split_seed)
    study.set_user_attr("validation_fraction", validation_fraction)
    if fourier_scale is not None:
        study.set_user_attr("fourier_scale", fourier_scale)
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
    trials asked for is updated by each run (:func:`_claim_study` has refused a study recorded
    with other settings). JSON only: storages keep attributes as JSON.
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
