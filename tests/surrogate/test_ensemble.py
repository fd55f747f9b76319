"""The ensemble recipe: what it plans, what it trains, and the options it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from bluesky_digitwin.data import DigitwinInputError
from bluesky_digitwin.surrogate.ensemble import (
    REFERENCE_CONFIGURATION,
    EnsembleRecipe,
    train_members,
)
from bluesky_digitwin.surrogate.network import Scaling
from bluesky_digitwin.surrogate.search import SplitData
from bluesky_digitwin.surrogate.training import TrainConfig

TRIALS = [
    (7, {"n_layers": 2, "n_units": 8, "learning_rate": 3e-3, "batch_size": 16, "l2": 0.0}),
    (3, {"n_layers": 3, "n_units": 6, "learning_rate": 2e-3, "batch_size": 32, "l2": 1e-4}),
]


def test_plan_deals_networks_out_evenly_best_first():
    plan = EnsembleRecipe(size=5, configurations=2).plan(TRIALS, [16, 32, 64])
    assert [(trial, count) for trial, _, count in plan] == [(7, 2), (3, 2), (None, 1)]
    reference = plan[-1][1]
    assert reference["n_units"] == REFERENCE_CONFIGURATION["n_units"]
    assert reference["batch_size"] == 16  # the smallest batch the search offers
    assert reference["activation"] == "silu"
    kinked = EnsembleRecipe(size=2, reference_activation="relu").plan(TRIALS, [16])
    assert kinked[-1][1]["activation"] == "relu"
    # A small scan: the reference's batch shrinks to give 16 steps an epoch, never below 16.
    steps = EnsembleRecipe(size=2, reference_steps=16)
    assert steps.plan(TRIALS, [64, 128], 260)[-1][1]["batch_size"] == 16
    assert steps.plan(TRIALS, [64, 128], 646)[-1][1]["batch_size"] == 40
    assert steps.plan(TRIALS, [256, 512], 24000)[-1][1]["batch_size"] == 256
    assert EnsembleRecipe(size=2).plan(TRIALS, [64, 128], 260)[-1][1]["batch_size"] == 26
    assert EnsembleRecipe(size=2).plan(TRIALS, [64, 128], 646)[-1][1]["batch_size"] == 64
    no_steps = EnsembleRecipe(size=2, reference_steps=None)
    assert no_steps.plan(TRIALS, [64, 128], 260)[-1][1]["batch_size"] == 64
    assert EnsembleRecipe(size=1).plan(TRIALS, [16]) == [(7, TRIALS[0][1], 1)]
    only_reference = EnsembleRecipe(size=3, configurations=0).plan(TRIALS, [64])
    assert [(trial, count) for trial, _, count in only_reference] == [(None, 3)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 0}, "at least one network"),
        ({"configurations": 0, "reference": False}, "configurations must be at least 1"),
        ({"configurations": -1}, "configurations must be at least 1"),
        ({"reference_activation": "sigmoidal"}, "unknown activation 'sigmoidal'"),
        ({"reference_steps": 0}, "reference_steps must be at least 1"),
    ],
)
def test_bad_recipes_are_one_clear_error(options, message):
    with pytest.raises(DigitwinInputError, match=message):
        EnsembleRecipe(**options)


def test_paper_recipe_keeps_the_trials_networks():
    recipe = EnsembleRecipe.paper(4)
    assert recipe.size == 4 and not recipe.retrain


def test_train_members_gives_the_planned_networks():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(60, 2)).astype(np.float32)
    y = np.sin(2 * x[:, 0]) * x[:, 1]
    scaling = Scaling.from_data(x, y)
    split = SplitData(
        x_train=scaling.scale_x(x[:48]),
        y_train=scaling.scale_y(y[:48]),
        x_val=scaling.scale_x(x[48:]),
        y_val=scaling.scale_y(y[48:]),
        scaling=scaling,
    )
    plan = [(7, TRIALS[0][1], 2), (3, TRIALS[1][1], 1)]
    trained = train_members(
        plan, split, train_config=TrainConfig(max_epochs=6, chunk_epochs=3), refit_epochs=2
    )
    assert [m.source_trial for m in trained.members] == [7, 7, 3]
    assert len({m.seed for m in trained.members}) == 3
    assert trained.validation_prediction.shape == (12,)
    grid = split.x_val
    first, second = (np.asarray(m.model(grid)).ravel() for m in trained.members[:2])
    assert not np.allclose(first, second)  # two seeds, two networks
    assert all(m.result.epochs_run == 6 for m in trained.members)
