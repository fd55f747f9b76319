"""The twin's networks from a finished search: the paper's (the best trials' own networks) or
new ones of the :class:`~bluesky_digitwin.surrogate.ensemble.EnsembleRecipe`.

:meth:`DigitalTwin.fit <bluesky_digitwin.twin.DigitalTwin.fit>` calls one of the two; the
ensemble benchmark (benchmarks/bench_ensemble_recipes.py) calls both on one search.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from bluesky_digitwin.data import TrainingData
from bluesky_digitwin.surrogate.ensemble import (
    EnsembleRecipe,
    Member,
    MemberTraining,
    train_members,
)
from bluesky_digitwin.surrogate.network import Scaling
from bluesky_digitwin.surrogate.search import SearchResult
from bluesky_digitwin.surrogate.search_space import SearchSpace
from bluesky_digitwin.surrogate.training import TrainConfig
from bluesky_digitwin.surrogate.trials import trial_params

__all__ = ["build_new_members", "build_trial_members"]


def build_trial_members(
    result: SearchResult,
    trials: Sequence[Any],
    data: TrainingData,
    training: MemberTraining,
) -> tuple[list[Any], list[dict[str, Any]], np.ndarray]:
    """The paper's ensemble: the best trials' own networks, refitted on all points as
    ``training`` says (:meth:`~bluesky_digitwin.surrogate.ensemble.MemberTraining.refit_schedule`;
    they trained as its trials did).

    Also returns the networks' mean prediction of the held-out points (scaled) before the
    refit, when they had not seen them.
    """
    from optuna.artifacts import download_artifact

    from bluesky_digitwin.surrogate.network import wrap_with_scaling
    from bluesky_digitwin.surrogate.training import train
    from bluesky_digitwin.surrogate.trials import MODEL_ARTIFACT
    from bluesky_digitwin.tensorflow_runtime import keras

    scaling: Scaling = result.scaling
    x_all = scaling.inputs(data.x)
    y_all = scaling.scale_y(data.y)
    split = result.split
    val_var = float(np.var(split.y_val)) or 1.0
    members, meta, validation = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rank, trial in enumerate(trials):
            path = os.path.join(tmp, f"trial-{trial.number}.keras")
            download_artifact(
                artifact_store=result.artifact_store,
                file_path=path,
                artifact_id=trial.user_attrs[MODEL_ARTIFACT],
            )
            core = keras.saving.load_model(path, compile=False, safe_mode=True)
            params = trial_params(trial)
            validation.append(np.asarray(core(split.x_val, training=False)).reshape(-1))
            if training.refit_epochs > 0:
                # The held-out points join in, keeping the weights with the lowest loss over all.
                refit, factor = training.refit_schedule()
                train(
                    core,
                    x_all,
                    y_all,
                    batch_size=int(params["batch_size"]),
                    learning_rate=float(params["learning_rate"]) * factor,
                    config=refit,
                    seed=int(trial.user_attrs.get("seed", trial.number)) + 1,
                )
            members.append(wrap_with_scaling(core, scaling, name=f"member_{rank}"))
            mse = float(trial.value)
            meta.append(
                {
                    "trial": trial.number,
                    "params": params,
                    "validation_mse_scaled": mse,
                    "validation_rmse": float(np.sqrt(mse) * scaling.y_std),
                    "validation_r2": float(1 - mse / val_var),
                    "best_epoch": int(trial.user_attrs.get("best_epoch", -1)),
                    "epochs_run": int(trial.user_attrs.get("epochs_run", -1)),
                }
            )
    return members, meta, np.mean(validation, axis=0)


def build_new_members(
    result: SearchResult,
    trials: Sequence[Any],
    data: TrainingData,
    recipe: EnsembleRecipe,
    train_config: TrainConfig,
    space: SearchSpace | None,
    seed: int | None,
    *,
    trained: Sequence[Member] = (),
) -> tuple[list[Any], list[dict[str, Any]], np.ndarray]:
    """New networks of the best trials' hyperparameters (and the reference), trained together.

    ``trained``: networks of the plan already trained (the reference's, beside the search).
    """
    from bluesky_digitwin.surrogate.network import wrap_with_scaling

    scaling: Scaling = result.scaling
    batch_sizes = (space or SearchSpace()).batch_choices(data.n_points)
    plan = recipe.plan(
        [(t.number, trial_params(t)) for t in trials], batch_sizes, len(result.split.y_train)
    )
    ensemble = train_members(
        plan,
        result.split,
        recipe.member_training(train_config),
        seed=seed or 0,
        trained=trained,
    )
    val_var = float(np.var(result.split.y_val)) or 1.0
    members, meta = [], []
    for rank, member in enumerate(ensemble.members):
        members.append(wrap_with_scaling(member.model, scaling, name=f"member_{rank}"))
        mse = float(member.result.best_loss)
        meta.append(
            {
                "trial": member.source_trial,
                "params": member.params,
                "seed": member.seed,
                "validation_mse_scaled": mse,
                "validation_rmse": float(np.sqrt(mse) * scaling.y_std),
                "validation_r2": float(1 - mse / val_var),
                "best_epoch": member.result.best_epoch,
                "epochs_run": member.result.epochs_run,
            }
        )
    return members, meta, ensemble.validation_prediction
