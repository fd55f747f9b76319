"""One trial of the search and the loop that runs trials: objective, sampler, pruner, ranking.

Every process that searches (this one, the spawned local workers, ``digitwin worker`` on other
machines) runs the same objective (:func:`make_objective`) in the same loop
(:func:`optimize_until`) with the paper's sampler and pruner unless given others.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from bluesky_digitwin.surrogate.recovery import (
    WORKER_ATTR,
    StopWhenFinished,
    UnclaimedTrials,
    count_finished,
    count_taken,
    recover_orphaned_trials,
    worker_identity,
)
from bluesky_digitwin.surrogate.search_space import SearchSpace
from bluesky_digitwin.surrogate.split import SplitData
from bluesky_digitwin.surrogate.training import TrainConfig

__all__ = [
    "MODEL_ARTIFACT",
    "make_objective",
    "make_pruner",
    "make_sampler",
    "optimize_until",
    "ranked_trials",
    "settled_trials",
    "trial_params",
    "wait_for_workers",
]

#: The trial attribute that holds the id of its network's artifact.
MODEL_ARTIFACT = "model_artifact_id"


def ranked_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The complete trials that stored a network, best first."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted((t for t in complete if MODEL_ARTIFACT in t.user_attrs), key=lambda t: t.value)


def settled_trials(
    study: optuna.Study, poll: float = 0.2, unclaimed: UnclaimedTrials | None = None
) -> list[optuna.trial.FrozenTrial]:
    """:func:`ranked_trials` once no trial runs any more (the other processes' last ones).

    A process that ends its share of the search first waits here for the others' last
    trials, since the best trial is known only then. Trials of dead workers are failed as
    :func:`wait_for_workers` fails them (heartbeats, local processes, unclaimed trials), so
    they cannot keep it waiting. Give the ``unclaimed`` tracker :func:`optimize_until` used,
    so that a trial it already watched unclaimed does not wait out the whole grace again.
    """
    if unclaimed is None:
        unclaimed = UnclaimedTrials()
    while True:
        _fail_dead_workers_trials(study, unclaimed)
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return ranked_trials(study)
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
    poll: float = 0.2,
    unclaimed: UnclaimedTrials | None = None,
) -> None:
    """Run trials until the study's ``n_trials`` (shared by all workers) are finished.

    A trial starts only while fewer than ``n_trials`` are finished or running, so two workers
    do not both run the last one. Once all are taken this worker waits for the others' last
    trials rather than leaving: if one of them belonged to a worker that died, it is failed
    here (heartbeats, processes on this machine) and its retry is run here. A worker that left
    as soon as the trials were taken would leave a dead worker's trial, and the search, one
    short for ever.

    ``poll`` is how often it looks meanwhile: the work after the search waits on it, so it is
    short (each look reads the storage a few times). ``unclaimed`` tracks trials no process has
    claimed yet (:class:`~bluesky_digitwin.surrogate.recovery.UnclaimedTrials`); pass the same
    one on to :func:`settled_trials`.
    """
    if unclaimed is None:
        unclaimed = UnclaimedTrials()
    while True:
        _fail_dead_workers_trials(study, unclaimed)
        if count_finished(study) >= n_trials:
            return
        if count_taken(study) < n_trials:
            with warnings.catch_warnings():
                # Optuna calls its experimental fail_stale_trials when heartbeats are on.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.optimize(
                    objective,
                    callbacks=[StopWhenFinished(n_trials)],
                    # A trial that raises is recorded as failed; the search goes on.
                    catch=(Exception,),
                    gc_after_trial=False,
                )
        else:
            time.sleep(poll)


def _fail_dead_workers_trials(study: optuna.Study, unclaimed: UnclaimedTrials) -> None:
    """Fail, and queue again, the running trials of workers that died."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    recover_orphaned_trials(study, unclaimed)


def wait_for_workers(study: optuna.Study, n_trials: int, poll: float = 2.0) -> None:
    """Train nothing here: wait until other workers have finished ``n_trials`` trials.

    Meanwhile fail and retry the trials of dead workers (heartbeats, processes on this
    machine, trials no process claimed), so a killed worker cannot leave the search waiting
    for ever.
    """
    unclaimed = UnclaimedTrials()
    while True:
        _fail_dead_workers_trials(study, unclaimed)
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


def trial_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """Full hyperparameters of a finished trial (including the implied l2=0, dropout=0)."""
    params = dict(trial.params)
    params.setdefault("l2", 0.0)
    params.setdefault("dropout", 0.0)
    params.setdefault("regularization", "none")
    # Studies from before the activation was searched trained ReLU networks.
    params.setdefault("activation", "relu")
    return params
