"""The ensemble recipe: what it plans, what it trains, and the options it refuses."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from bluesky_digitwin.data import DigitwinInputError
from bluesky_digitwin.surrogate.ensemble import (
    REFERENCE_CONFIGURATION,
    BestShapeShare,
    EnsembleRecipe,
    MemberTraining,
    PlannedGroup,
    default_recipe,
    gather_shares,
    train_group_members,
    train_members,
)
from bluesky_digitwin.surrogate.network import Scaling
from bluesky_digitwin.surrogate.population import train_group
from bluesky_digitwin.surrogate.search import SplitData
from bluesky_digitwin.surrogate.training import TrainConfig

TRIALS = [
    (7, {"n_layers": 2, "n_units": 8, "learning_rate": 3e-3, "batch_size": 16, "l2": 0.0}),
    (3, {"n_layers": 3, "n_units": 6, "learning_rate": 2e-3, "batch_size": 32, "l2": 1e-4}),
]


def test_plan_deals_networks_out_evenly_best_first():
    plan = EnsembleRecipe(size=5, configurations=2).plan(TRIALS, [16, 32, 64])
    assert [(g.trial, g.count, g.rank) for g in plan] == [(7, 2, 0), (3, 2, 1), (None, 1, 2)]
    reference = plan[-1][1]
    assert reference["n_units"] == REFERENCE_CONFIGURATION["n_units"]
    assert reference["batch_size"] == 16  # the smallest batch the search offers
    assert reference["activation"] == "silu"
    kinked = EnsembleRecipe(size=2, reference_activation="relu").plan(TRIALS, [16])
    assert kinked[-1][1]["activation"] == "relu"
    assert EnsembleRecipe().reference_shape == (5, 160)
    # The earlier default, as a JSON list: the same shape as the tuple.
    shallow = EnsembleRecipe(size=2, reference_shape=[3, 200])
    assert shallow.reference_shape == (3, 200)
    reference = shallow.plan(TRIALS, [16])[-1][1]
    assert (reference["n_layers"], reference["n_units"]) == (3, 200)
    smooth_trials = EnsembleRecipe(size=2, trial_activation="tanh").plan(TRIALS, [16])
    # By default the trial's 3e-3 is capped at the reference's learning rate.
    assert smooth_trials[0].params == {**TRIALS[0][1], "activation": "tanh", "learning_rate": 1e-3}
    own_rate = EnsembleRecipe(size=2, trial_rate_cap=None).plan(TRIALS, [16])
    assert own_rate[0].params == TRIALS[0][1]
    assert "activation" not in TRIALS[0][1]  # the trial's own record is left alone
    # A capped learning rate lowers the fast trials' rate and leaves slower ones alone.
    capped = EnsembleRecipe(size=4, configurations=2, trial_rate_cap=2.5e-3).plan(TRIALS, [16])
    assert [g.params["learning_rate"] for g in capped[:2]] == [2.5e-3, 2e-3]
    assert capped[-1].params["learning_rate"] == 1e-3  # the reference's own rate
    assert TRIALS[0][1]["learning_rate"] == 3e-3
    # A small scan: the reference's batch shrinks to give 16 steps an epoch, never below 16.
    steps = EnsembleRecipe(size=2, reference_steps=16)
    assert steps.plan(TRIALS, [64, 128], 260)[-1][1]["batch_size"] == 16
    assert steps.plan(TRIALS, [64, 128], 646)[-1][1]["batch_size"] == 40
    assert steps.plan(TRIALS, [256, 512], 24000)[-1][1]["batch_size"] == 256
    assert EnsembleRecipe(size=2).plan(TRIALS, [64, 128], 260)[-1][1]["batch_size"] == 26
    assert EnsembleRecipe(size=2).plan(TRIALS, [64, 128], 646)[-1][1]["batch_size"] == 64
    no_steps = EnsembleRecipe(size=2, reference_steps=None)
    assert no_steps.plan(TRIALS, [64, 128], 260)[-1][1]["batch_size"] == 64
    assert EnsembleRecipe(size=1, trial_rate_cap=None).plan(TRIALS, [16]) == [
        PlannedGroup(7, TRIALS[0][1], 1, 0)
    ]
    only_reference = EnsembleRecipe(size=3, configurations=0).plan(TRIALS, [64])
    assert [(g.trial, g.count) for g in only_reference] == [(None, 3)]


def test_the_reference_share_is_fixed_before_the_search():
    # The reference trains beside the search, before anyone knows how many trials qualify:
    # its share and seeds must not depend on that.
    recipe = EnsembleRecipe(size=7, configurations=2)
    (alone,) = recipe.reference_groups([16])
    assert (alone.count, alone.rank) == (2, 2)
    one_trial = recipe.plan(TRIALS[:1], [16])
    assert [(g.trial, g.count, g.rank) for g in one_trial] == [(7, 5, 0), (None, 2, 2)]
    assert EnsembleRecipe.paper().reference_groups([16]) == []
    assert EnsembleRecipe(size=1).reference_groups([16]) == []


def test_several_reference_activations_make_one_group_each():
    recipe = EnsembleRecipe(size=12, reference_activation=("silu", "relu"))
    plan = recipe.plan(TRIALS, [16])
    assert [(g.trial, g.count, g.rank) for g in plan] == [(7, 4, 0), (None, 4, 1), (None, 4, 2)]
    assert [g.params["activation"] for g in plan[1:]] == ["silu", "relu"]
    assert recipe.reference_groups([16]) == plan[1:]
    # As JSON gives it (fit options, twin.json): the same recipe.
    assert EnsembleRecipe(size=12, reference_activation=["silu", "relu"]) == recipe
    # Too few networks for every group: the last groups get none.
    small = EnsembleRecipe(size=2, reference_activation=("silu", "relu")).plan(TRIALS, [16])
    assert [(g.trial, g.params.get("activation")) for g in small] == [(7, None), (None, "silu")]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 0}, "at least one network"),
        ({"configurations": 0, "reference": False}, "configurations must be at least 1"),
        ({"configurations": -1}, "configurations must be at least 1"),
        ({"reference_activation": "sigmoidal"}, "unknown activation 'sigmoidal'"),
        ({"reference_activation": ("silu", "sigmoidal")}, "unknown activation 'sigmoidal'"),
        ({"reference_activation": ()}, "needs at least one activation"),
        ({"trial_activation": "sigmoidal"}, "unknown activation 'sigmoidal'"),
        ({"reference_steps": 0}, "reference_steps must be at least 1"),
        ({"trial_rate_cap": 0}, "trial_rate_cap is a learning rate"),
        ({"trial_rate_cap": 2.0}, "trial_rate_cap is a learning rate"),
        ({"trial_rate_cap": "1e-3"}, "trial_rate_cap is a learning rate"),
        ({"reference_l2": -1e-5}, "reference_l2 is the reference networks' L2 penalty"),
        ({"reference_l2": 1.5}, "reference_l2 is the reference networks' L2 penalty"),
        ({"reference_l2": "1e-5"}, "reference_l2 is the reference networks' L2 penalty"),
        ({"reference_shape": (3,)}, r"reference_shape is \(hidden layers, nodes per layer\)"),
        ({"reference_shape": (0, 200)}, r"reference_shape is \(hidden layers"),
        ({"reference_shape": (3, 2.5)}, r"reference_shape is \(hidden layers"),
        ({"reference_shape": "3x200"}, r"reference_shape is \(hidden layers"),
        ({"reference_shape": 200}, r"reference_shape is \(hidden layers"),
        ({"refit_rate": 0}, "refit_rate is a multiple of each network's initial"),
        ({"refit_rate": "fast"}, "refit_rate is a multiple of each network's initial"),
        ({"max_epochs": 0}, "max_epochs is the new networks' most epochs before their refit"),
        ({"max_epochs": 2.5}, "max_epochs is the new networks' most epochs before their refit"),
    ],
)
def test_bad_recipes_are_one_clear_error(options, message):
    with pytest.raises(DigitwinInputError, match=message):
        EnsembleRecipe(**options)


def test_paper_recipe_keeps_the_trials_networks():
    recipe = EnsembleRecipe.paper(4)
    assert recipe.size == 4 and not recipe.retrain
    assert recipe.max_epochs is None  # its networks are the trials', trained as trials are


def test_the_new_networks_epochs_are_capped_not_raised():
    config = TrainConfig(max_epochs=500)
    assert EnsembleRecipe().member_training(config).config == TrainConfig(max_epochs=250)
    assert EnsembleRecipe(max_epochs=None).member_training(config).config == config
    assert EnsembleRecipe(max_epochs=800).member_training(config).config == config
    # The refit is the recipe's.
    training = EnsembleRecipe(refit_epochs=7, refit_rate=0.5).member_training(config)
    assert (training.refit_epochs, training.refit_rate) == (7, 0.5)


def _split(x: np.ndarray, y: np.ndarray, n_train: int) -> SplitData:
    """The first ``n_train`` points to train on, the rest held out, scaled."""
    scaling = Scaling.from_data(x, y)
    return SplitData(
        x_train=scaling.scale_x(x[:n_train]),
        y_train=scaling.scale_y(y[:n_train]),
        x_val=scaling.scale_x(x[n_train:]),
        y_val=scaling.scale_y(y[n_train:]),
        scaling=scaling,
    )


def test_train_members_gives_the_planned_networks():
    x = np.random.default_rng(0).uniform(-1, 1, size=(60, 2)).astype(np.float32)
    split = _split(x, np.sin(2 * x[:, 0]) * x[:, 1], 48)
    plan = [PlannedGroup(7, TRIALS[0][1], 2, 0), PlannedGroup(3, TRIALS[1][1], 1, 1)]
    config = TrainConfig(max_epochs=6, chunk_epochs=3)
    trained = train_members(plan, split, MemberTraining(config, refit_epochs=2, refit_rate=1.0))
    assert [m.source_trial for m in trained.members] == [7, 7, 3]
    assert len({m.seed for m in trained.members}) == 3
    assert trained.validation_prediction.shape == (12,)
    grid = split.x_val
    first, second = (np.asarray(m.model(grid)).ravel() for m in trained.members[:2])
    assert not np.allclose(first, second)  # two seeds, two networks
    assert all(m.result.epochs_run == 6 for m in trained.members)


def test_the_reference_l2_reaches_the_reference_networks():
    x = np.random.default_rng(1).uniform(-1, 1, size=(60, 2)).astype(np.float32)
    split = _split(x, np.sin(2 * x[:, 0]) * x[:, 1], 48)
    assert EnsembleRecipe(size=2).plan(TRIALS, [16])[-1].params["l2"] == 0.0
    recipe = EnsembleRecipe(size=2, configurations=0, reference_l2=1e-5, reference_shape=(2, 8))
    plan = recipe.plan(TRIALS, [16])
    assert [(g.trial, g.params["l2"], g.params["regularization"]) for g in plan] == [
        (None, 1e-5, "l2")
    ]
    trained = train_members(
        plan, split, MemberTraining(TrainConfig(max_epochs=3, chunk_epochs=3), 0, 1.0)
    )
    hidden = [
        layer
        for layer in trained.members[0].model.layers
        if getattr(layer, "kernel_regularizer", None)
    ]
    assert len(hidden) == 2
    assert all(
        float(layer.kernel_regularizer.get_config()["l2"]) == pytest.approx(1e-5)
        for layer in hidden
    )


def test_a_group_trained_beforehand_is_used_not_trained_again():
    x = np.random.default_rng(1).uniform(-1, 1, size=(40, 2)).astype(np.float32)
    split = _split(x, x[:, 0] - x[:, 1] ** 2, 32)
    config = TrainConfig(max_epochs=4, chunk_epochs=2)
    plan = EnsembleRecipe(size=3).plan(TRIALS[:1], [16], len(split.y_train))
    training = MemberTraining(config, refit_epochs=1, refit_rate=1.0)
    reference = train_group_members(plan[-1], split, training)
    together = train_members(plan, split, training, trained=reference)
    assert [m.source_trial for m in together.members] == [7, 7, None]
    assert together.members[-1] is reference[0]
    # The same seeds as training the whole plan at once: the same networks.
    at_once = train_members(plan, split, training)
    assert [m.seed for m in at_once.members] == [m.seed for m in together.members]
    np.testing.assert_allclose(
        np.asarray(at_once.members[-1].model(split.x_val)),
        np.asarray(reference[0].model(split.x_val)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_a_group_shared_out_in_parts_is_the_group_trained_at_once(tmp_path):
    # What the search's processes do after the search: each trains every second network of
    # the best trial's group; gathered, they are the networks one process would have trained.
    # The second part comes back through the file a spawned worker writes (no pickle).
    x = np.random.default_rng(2).uniform(-1, 1, size=(50, 2)).astype(np.float32)
    split = _split(x, np.cos(2 * x[:, 0]) + x[:, 1], 40)
    config = TrainConfig(max_epochs=6, chunk_epochs=3)
    _, params = TRIALS[0]
    distributions = {
        "n_layers": optuna.distributions.IntDistribution(1, 4),
        "n_units": optuna.distributions.IntDistribution(4, 16),
        "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
        "batch_size": optuna.distributions.CategoricalDistribution([16, 32]),
    }
    trial = optuna.trial.create_trial(
        params={k: params[k] for k in distributions}, distributions=distributions, value=0.1
    )
    recipe = EnsembleRecipe(size=5, reference=False, refit_epochs=1)
    share = BestShapeShare(recipe, (16, 32), config, seed=3)
    parts = [share(split, [trial], part, 2) for part in range(2)]
    with open(tmp_path / "after-1.part", "wb") as f:
        share.save_part(parts[1], f)
    sent = share.load_part(tmp_path / "after-1.part")
    for record, back in zip(parts[1], sent, strict=True):
        assert (back.params, back.seed, back.source_trial, back.index, back.result) == (
            record.params,
            record.seed,
            record.source_trial,
            record.index,
            record.result,
        )
        sent_arrays = [back.validation, *back.weights]
        for a, b in zip([record.validation, *record.weights], sent_arrays, strict=True):
            np.testing.assert_array_equal(a, b)
    parts[1] = sent
    assert [[r.index for r in part] for part in parts] == [[0, 2, 4], [1, 3]]
    members = gather_shares(parts, n_features=2)
    (group,) = recipe.plan([(trial.number, params)], [16, 32], len(split.y_train))
    at_once = train_group_members(group, split, recipe.member_training(config), seed=3)
    assert [m.seed for m in members] == [m.seed for m in at_once]
    for shared, alone in zip(members, at_once, strict=True):
        assert shared.result.epochs_run == alone.result.epochs_run
        np.testing.assert_allclose(shared.validation, alone.validation, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            np.asarray(shared.model(split.x_val)),
            np.asarray(alone.model(split.x_val)),
            rtol=1e-4,
            atol=1e-5,
        )


def test_the_refit_continues_on_all_points_at_the_rate_the_recipe_gives():
    x = np.random.default_rng(4).uniform(-1, 1, size=(50, 2)).astype(np.float32)
    split = _split(x, np.cos(2 * x[:, 0]) + x[:, 1], 40)
    config = TrainConfig(max_epochs=4, chunk_epochs=2, lr_drop_factor=5.0)
    refit, factor = MemberTraining(config, 3, 1.0).refit_schedule()
    assert (refit.max_epochs, refit.patience, refit.lr_drop_epoch, factor) == (3, 3, 3, 1.0)
    final_rate = MemberTraining(config, 3, None).refit_schedule()[1]
    assert final_rate == pytest.approx(0.2)
    group = PlannedGroup(7, TRIALS[0][1], 1, 0)
    (by_hand,) = train_group_members(group, split, MemberTraining(config, 0, 1.0))
    train_group(
        [by_hand.model],
        np.concatenate([split.x_train, split.x_val]),
        np.concatenate([split.y_train, split.y_val]),
        batch_size=16,
        learning_rates=[TRIALS[0][1]["learning_rate"]],
        seeds=[by_hand.seed + 1],
        config=refit,
    )
    (fast,) = train_group_members(group, split, MemberTraining(config, 3, 1.0))
    (gentle,) = train_group_members(group, split, MemberTraining(config, 3, None))
    grid = split.x_val
    np.testing.assert_allclose(
        np.asarray(fast.model(grid)), np.asarray(by_hand.model(grid)), rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(np.asarray(gentle.model(grid)), np.asarray(fast.model(grid)))


def test_the_default_recipe_is_the_papers_above_the_reference_points():
    config = TrainConfig(reference_points=8192)
    assert default_recipe(808, config) == EnsembleRecipe()
    assert default_recipe(8192, config) == EnsembleRecipe()
    # A large map: the best trials' own networks (benchmarks/RESULTS.md, arpes-lines-full).
    assert default_recipe(8193, config) == EnsembleRecipe.paper()
    assert default_recipe(29_977, TrainConfig(reference_points=None)) == EnsembleRecipe()
