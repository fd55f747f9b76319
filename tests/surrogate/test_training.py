"""The compiled training loop: learns, stops early, drops the learning rate by epochs, prunes."""

from __future__ import annotations

import numpy as np
import pytest

from bluesky_digitwin.surrogate.network import Scaling, build_mlp, wrap_with_scaling
from bluesky_digitwin.surrogate.training import TrainConfig, train


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2))
    y = np.sin(2 * x[:, 0]) + x[:, 1] ** 2
    return x.astype(np.float32), y.astype(np.float32)


def test_learns_and_restores_the_best_weights():
    x, y = _data()
    model = build_mlp(2, 2, 32, seed=1)
    result = train(
        model,
        x[:100],
        y[:100],
        x[100:],
        y[100:],
        batch_size=16,
        learning_rate=3e-3,
        config=TrainConfig(max_epochs=60, patience=100),
        seed=1,
    )
    assert result.epochs_run == 60
    assert result.stopped_by == "max_epochs"
    assert len(result.history) == 60
    # The restored weights are those of the best epoch: their loss is the best one recorded.
    val = float(np.mean((np.asarray(model(x[100:])).ravel() - y[100:]) ** 2))
    assert val == pytest.approx(min(result.history), rel=1e-4)
    assert result.best_loss == pytest.approx(min(result.history), rel=1e-6)
    assert result.history[result.best_epoch] == pytest.approx(result.best_loss)
    assert result.best_loss < 0.1 * float(np.var(y[100:]))


def test_learning_rate_drops_after_n_epochs_not_steps():
    x, y = _data()
    result = train(
        build_mlp(2, 2, 8, seed=0),
        x,
        y,
        batch_size=8,
        learning_rate=1e-3,
        config=TrainConfig(max_epochs=7, lr_drop_epoch=3, lr_drop_factor=5, chunk_epochs=2),
    )
    # 15 optimizer steps an epoch: a step-counting schedule would drop during epoch 0.
    assert result.learning_rates == pytest.approx([1e-3] * 3 + [2e-4] * 4)


def test_early_stopping_and_pruning_stop_the_loop():
    x, y = _data()
    stopped = train(
        build_mlp(2, 2, 8, seed=0),
        x[:100],
        y[:100],
        x[100:],
        y[100:],
        batch_size=100,
        learning_rate=1e-9,  # nothing improves after the first epoch
        config=TrainConfig(max_epochs=200, patience=5, chunk_epochs=5),
    )
    assert stopped.stopped_by == "early_stopping"
    assert stopped.epochs_run <= 10

    calls = []

    def prune_at_10(epochs, best):
        calls.append((epochs, best))
        return epochs >= 10

    pruned = train(
        build_mlp(2, 2, 8, seed=0),
        x[:100],
        y[:100],
        x[100:],
        y[100:],
        config=TrainConfig(max_epochs=200, chunk_epochs=5),
        should_stop=prune_at_10,
    )
    assert pruned.stopped_by == "pruned"
    assert [c[0] for c in calls] == [5, 10]
    assert all(np.isfinite(c[1]) for c in calls)


def test_same_seed_same_result():
    x, y = _data()
    runs = [
        train(build_mlp(2, 2, 16, seed=3), x, y, config=TrainConfig(max_epochs=5), seed=3)
        for _ in range(2)
    ]
    assert runs[0].history == runs[1].history


def test_scaling_travels_with_the_wrapped_model():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(10, 60, 50), rng.uniform(100, 5e4, 50)])  # K and Oe
    y = 1e-3 * x[:, 0] + 1e-7 * x[:, 1]  # emu-sized
    scaling = Scaling.from_data(x, y)
    core = build_mlp(2, 2, 4, seed=0)
    wrapped = wrap_with_scaling(core, scaling)
    raw = np.asarray(wrapped(x.astype(np.float32))).ravel()
    scaled = np.asarray(core(scaling.scale_x(x))).ravel() * scaling.y_std + scaling.y_mean
    np.testing.assert_allclose(raw, scaled, rtol=1e-4, atol=1e-9)
    assert Scaling.from_dict(scaling.to_dict()) == scaling


def test_regularised_and_dropout_networks_train():
    x, y = _data()
    model = build_mlp(2, 2, 16, l2=1e-4, dropout=0.1, seed=0)
    assert model.losses  # the L2 penalty is there
    result = train(model, x, y, config=TrainConfig(max_epochs=5))
    assert np.isfinite(result.best_loss)


def test_bad_config():
    with pytest.raises(ValueError, match="max_epochs"):
        TrainConfig(max_epochs=0)


def test_recipes_compare_by_what_they_do_to_the_data():
    small, large = TrainConfig(reference_points=8192), TrainConfig(reference_points=16384)
    # Both train 5000 points in real epochs: the same networks.
    assert small.as_trained(5000) == large.as_trained(5000)
    # 10 000 points: one counts passes over 8192 of them, the other real epochs.
    assert small.as_trained(10_000) != large.as_trained(10_000)
    assert TrainConfig(patience=10).as_trained(100) != TrainConfig().as_trained(100)


def test_large_data_count_epochs_in_passes_over_the_reference_size():
    """400 points with reference_points=100: one real epoch counts as four."""
    x, y = _data(n=400)
    config = TrainConfig(
        max_epochs=40, patience=1000, lr_drop_epoch=20, chunk_epochs=8, reference_points=100
    )
    assert config.in_real_epochs(100) == (1.0, config)
    unit, real = config.in_real_epochs(400)
    assert unit == 4.0
    assert (real.max_epochs, real.lr_drop_epoch, real.chunk_epochs) == (10, 5, 2)
    reported = []

    def should_stop(epochs, best_loss):
        reported.append(epochs)
        return False

    result = train(
        build_mlp(2, 1, 8, seed=0),
        x,
        y,
        batch_size=100,
        learning_rate=1e-3,
        config=config,
        should_stop=should_stop,
    )
    assert result.epochs_run == 10  # real epochs
    # Counted epochs, as a pruner's rungs are (a chunk ends at the drop, real epoch 5).
    assert reported == [8, 16, 20, 28, 36, 40]
    assert result.learning_rates == pytest.approx([1e-3] * 5 + [2e-4] * 5)
    # Counting real epochs instead:
    plain = train(
        build_mlp(2, 1, 8, seed=0),
        x,
        y,
        batch_size=100,
        config=TrainConfig(max_epochs=12, chunk_epochs=4, reference_points=None),
    )
    assert plain.epochs_run == 12


def _slopes(model, grid):
    from bluesky_digitwin.tensorflow_runtime import tf

    points = tf.constant(grid)
    with tf.GradientTape() as tape:
        tape.watch(points)
        total = tf.reduce_sum(model(points))
    return tape.gradient(total, points).numpy()


def test_monotonic_shape_knowledge_bends_the_network_to_the_stated_sign():
    # sin(3 x0) falls over half of [-1, 1]; stated as increasing in x0, the network's slope
    # must stay non-negative almost everywhere, also where no training point lies.
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (160, 2)).astype(np.float32)
    y = np.sin(3 * x[:, 0]).astype(np.float32)
    grid = rng.uniform(-1, 1, (400, 2)).astype(np.float32)
    shares = {}
    for stated in ((), ((0, 1),)):
        model = build_mlp(2, 2, 32, activation="silu", seed=2)
        config = TrainConfig(max_epochs=80, patience=100, monotonic=stated, monotonic_weight=10.0)
        train(model, x, y, batch_size=32, learning_rate=5e-3, config=config, seed=2)
        shares[stated] = float(np.mean(_slopes(model, grid)[:, 0] < -0.05))
    assert shares[()] > 0.3
    assert shares[((0, 1),)] < 0.05


def test_monotonic_settings_are_checked():
    with pytest.raises(ValueError, match=r"\+1 or -1"):
        TrainConfig(monotonic=((0, 2),))
    with pytest.raises(ValueError, match="twice"):
        TrainConfig(monotonic=((0, 1), (0, -1)))
    # Pairs read back from JSON are lists.
    assert TrainConfig(monotonic=[[1, -1]]).monotonic == ((1, -1),)
    x, y = _data(20)
    with pytest.raises(ValueError, match="data have 2 feature"):
        train(
            build_mlp(2, 1, 4, seed=0), x, y, config=TrainConfig(max_epochs=1, monotonic=((2, 1),))
        )
