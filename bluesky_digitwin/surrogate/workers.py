"""Search workers that join a study from any machine.

A search started with a shared storage (``digitwin fit ... --storage postgresql://... --study
NAME``) records in its study what it searches and on what data (:data:`~bluesky_digitwin.
surrogate.study_record.STUDY_RECORD`). :func:`run_worker` needs nothing else: it reads the record,
fetches the training data (from the study's data artifact, or from the Tiled runs it names),
and runs trials until the study holds its number of finished trials. Optuna coordinates the
workers through the storage; there is no scheduler of ours.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore

from bluesky_digitwin.data import DigitwinInputError, prepare_training_data
from bluesky_digitwin.data_sources import ArtifactSource
from bluesky_digitwin.names import check_name
from bluesky_digitwin.redaction import redact_url
from bluesky_digitwin.surrogate.network import Scaling
from bluesky_digitwin.surrogate.recovery import WORKER_ATTR, count_finished
from bluesky_digitwin.surrogate.search_settings import HEARTBEAT_INTERVAL
from bluesky_digitwin.surrogate.split import SplitData
from bluesky_digitwin.surrogate.storage import open_storage
from bluesky_digitwin.surrogate.study_record import STUDY_RECORD, StudyRecord
from bluesky_digitwin.surrogate.trials import (
    make_objective,
    make_pruner,
    make_sampler,
    optimize_until,
)

__all__ = ["WorkerReport", "load_study_record", "run_worker"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerReport:
    """What a worker did.

    Attributes
    ----------
    study
        The study's name.
    trials_run
        Trials this worker ran to the end (complete, pruned or failed).
    finished
        Finished trials the study holds now (retried failures not counted).
    n_trials
        The number the worker worked toward.
    """

    study: str
    trials_run: int
    finished: int
    n_trials: int


def load_study_record(
    storage: str | os.PathLike | Any,
    study_name: str,
    *,
    heartbeat_interval: int | None = HEARTBEAT_INTERVAL,
) -> tuple[optuna.Study, StudyRecord]:
    """Open ``study_name`` on ``storage`` and return it with its search record.

    Raises
    ------
    DigitwinInputError
        The study does not exist (the message lists those that do), or was not made by a
        bluesky-digitwin search.
    """
    check_name(study_name, "study name")
    if isinstance(storage, (str, os.PathLike)) and "://" not in os.fspath(storage):
        if not os.path.isfile(storage):
            # Opening would create an empty journal: a typo must not look like a new search.
            raise DigitwinInputError(
                f"no journal file at {os.fspath(storage)}; give the --storage the search uses"
            )
    storage_obj = open_storage(storage, heartbeat_interval=heartbeat_interval)
    where = redact_url(os.fspath(storage)) if isinstance(storage, (str, os.PathLike)) else "storage"
    names = [s.study_name for s in optuna.get_all_study_summaries(storage_obj)]
    if study_name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise DigitwinInputError(
            f"no study {study_name!r} in {where} (studies there: {known}); start the search "
            "first (digitwin fit ... --storage URL --study NAME), then the workers"
        )
    study = optuna.load_study(study_name=study_name, storage=storage_obj)
    record = StudyRecord.from_json(study.user_attrs.get(STUDY_RECORD))
    if record is None:
        raise DigitwinInputError(
            f"study {study_name!r} in {where} was not made by a bluesky-digitwin search (it has "
            f"no {STUDY_RECORD!r} record); workers join studies that `digitwin fit` started"
        )
    return study, record


def _artifact_store(record: StudyRecord, artifacts: str | os.PathLike | Any | None) -> Any:
    if artifacts is not None and not isinstance(artifacts, (str, os.PathLike)):
        return artifacts  # a ready Optuna artifact store
    described = record.artifacts
    if artifacts is None and (described.kind != "filesystem" or not described.path):
        raise DigitwinInputError(
            f"this study keeps its trial models in a {described.kind} artifact store; "
            "give the worker the same store (run_worker(..., artifacts=store))"
        )
    path = os.fspath(artifacts) if artifacts is not None else described.path
    if not os.path.isdir(path):
        raise DigitwinInputError(
            f"the study's trial-model directory {path} is not on this machine; mount the shared "
            "directory and give its path here with --artifacts DIR"
        )
    return FileSystemArtifactStore(path)


def _load_split(study: optuna.Study, record: StudyRecord, store: Any) -> SplitData:
    """The study's training data, from its artifact or read again from Tiled."""
    scaling = Scaling.from_dict(record.scaling)
    data = record.data
    if isinstance(data, ArtifactSource):
        from optuna.artifacts import download_artifact

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "training-data.npz")
            download_artifact(artifact_store=store, file_path=path, artifact_id=data.artifact_id)
            with np.load(path, allow_pickle=False) as arrays:
                return SplitData(**{k: arrays[k] for k in arrays.files}, scaling=scaling)
    from bluesky_digitwin.tiled import open_node, read_runs

    # The API key comes from TILED_API_KEY or the user's profile, as for every client.
    node = open_node(data.uri, None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the coordinator has warned about these data
        table = read_runs(
            node,
            list(data.runs),
            features=list(data.features),
            target=data.target,
            keys=data.keys,
            stream=data.stream,
            include_simulated=data.include_simulated,
        )
        prepared = prepare_training_data(table, list(data.features), data.target)
    attrs = study.user_attrs
    if prepared.sha256() != attrs["data_sha256"]:
        raise DigitwinInputError(
            f"the runs at {data.uri} no longer give the data study {study.study_name!r} "
            "was started on (they changed since); start a new study"
        )
    # The study's own scaling (and Fourier features, if any), not one computed here again.
    return SplitData.split(
        prepared,
        attrs["validation_fraction"],
        int(attrs["split_seed"]),
        record.holdout,
        scaling=scaling,
    )


def run_worker(
    storage: str | os.PathLike | Any,
    study_name: str,
    *,
    n_trials: int | None = None,
    artifacts: str | os.PathLike | Any | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    seed: int | None = None,
    heartbeat_interval: int | None = HEARTBEAT_INTERVAL,
    on_joined: Callable[[StudyRecord], None] | None = None,
) -> WorkerReport:
    """Join a running search and train trials until the study holds enough finished ones.

    Parameters
    ----------
    storage
        The search's storage: a database URL (``postgresql://user@host/db``; the password from
        ``PGPASSWORD`` or ``~/.pgpass``) or a journal file on a shared disk.
    study_name
        The study the search started.
    n_trials
        Finished trials to reach; by default the number the search asked for.
    artifacts
        Where trial models go: by default the directory the study records; give a path when the
        shared directory is mounted elsewhere on this machine, or any Optuna artifact store.
    sampler, pruner
        Replace TPE and ASHA (the search's own choice, when it used custom ones).
    seed
        Seeds this worker's sampler (give each worker its own). The networks are seeded by the
        search's seed and the trial number, whichever worker trains them.
    heartbeat_interval
        Seconds between heartbeats of this worker's running trial on a database storage.
    on_joined
        Called with the study's record once it is read, before any data is fetched or any
        network trained: e.g. to say what the worker joined, or to set up the arithmetic the
        record's ``train_config.precision`` asks for before TensorFlow's first matmul.

    Returns
    -------
    WorkerReport
        How many trials this worker ran and how many the study holds finished.
    """
    study, record = load_study_record(storage, study_name, heartbeat_interval=heartbeat_interval)
    if on_joined is not None:
        on_joined(record)
    if record.custom_sampler_or_pruner and (sampler is None or pruner is None):
        warnings.warn(
            f"study {study_name!r} was started with a custom sampler or pruner; this worker "
            "uses TPE and ASHA unless given the same ones (run_worker(sampler=..., pruner=...))",
            UserWarning,
            stacklevel=2,
        )
    train_config = record.train_config
    study = optuna.load_study(
        study_name=study_name,
        storage=study._storage,
        sampler=sampler or make_sampler(seed, 0),
        pruner=pruner or make_pruner(train_config),
    )
    target = int(n_trials if n_trials is not None else record.n_trials)
    store = _artifact_store(record, artifacts)
    split = _load_split(study, record, store)
    before = {t.number for t in study.get_trials(deepcopy=False)}
    # Networks are seeded by the search's seed and the trial number, whichever worker runs them.
    objective = make_objective(split, record.space, train_config, store, record.seed)
    # Nothing here waits on the search's end: look at a database less often meanwhile.
    optimize_until(study, objective, target, poll=1.0)
    mine = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.number not in before
        and t.state.is_finished()
        and t.user_attrs.get(WORKER_ATTR, {}).get("pid") == os.getpid()
    ]
    return WorkerReport(
        study=study_name,
        trials_run=len(mine),
        finished=count_finished(study),
        n_trials=target,
    )
