"""The population trainer: k networks at once give what training each alone gives."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from digitwin_testing import subprocess_env

from bluesky_digitwin.surrogate import precision as precision_module
from bluesky_digitwin.surrogate.network import build_mlp
from bluesky_digitwin.surrogate.population import traced_loops, train_population
from bluesky_digitwin.surrogate.precision import FPMATH_ENV, hidden_matmuls
from bluesky_digitwin.surrogate.training import TrainConfig, train


def _data(n: int = 90, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.5, 1.5, size=(n, 2)).astype(np.float32)
    y = (np.tanh(2 * x[:, 0] - x[:, 1]) + 0.3 * x[:, 1] ** 2).astype(np.float32)
    y = (y - y.mean()) / y.std()
    return x[:70], y[:70], x[70:], y[70:]


# float32 throughout: train() computes in float32, and these tests compare with it to rounding.
CONFIG = TrainConfig(
    max_epochs=24, patience=6, lr_drop_epoch=10, chunk_epochs=5, precision="float32"
)
MEMBERS = [(3e-3, 1e-4, 11), (1e-3, 0.0, 12), (2e-3, 1e-3, 13)]  # learning rate, L2, seed


def _models(activation: str = "relu"):
    return [build_mlp(2, 2, 12, l2=l2, activation=activation, seed=seed) for _, l2, seed in MEMBERS]


def _train_members_together(models, x, y, xv, yv, config=CONFIG, **options):
    """The MEMBERS' learning rates and seeds, as one population."""
    return train_population(
        models,
        x,
        y,
        xv,
        yv,
        batch_size=16,
        learning_rates=[lr for lr, _, _ in MEMBERS],
        seeds=[seed for _, _, seed in MEMBERS],
        config=config,
        **options,
    )


@pytest.mark.parametrize(
    ("activation", "monotonic"),
    [("relu", ()), ("silu", ((0, 1), (1, -1)))],
    ids=["relu", "silu-monotonic"],
)
def test_population_matches_training_one_by_one(activation, monotonic):
    x, y, xv, yv = _data()
    config = replace(CONFIG, monotonic=monotonic)
    alone = _models(activation)
    alone_results = [
        train(m, x, y, xv, yv, batch_size=16, learning_rate=lr, config=config, seed=seed)
        for m, (lr, _, seed) in zip(alone, MEMBERS, strict=True)
    ]
    together = _models(activation)
    together_results = _train_members_together(together, x, y, xv, yv, config=config)
    grid = np.random.default_rng(1).uniform(-1.5, 1.5, size=(50, 2)).astype(np.float32)
    for a, b, ra, rb in zip(alone, together, alone_results, together_results, strict=True):
        assert rb.best_epoch == ra.best_epoch
        assert rb.epochs_run == ra.epochs_run
        assert rb.stopped_by == ra.stopped_by
        assert rb.learning_rates == pytest.approx(ra.learning_rates)
        assert rb.history == pytest.approx(ra.history, rel=1e-3, abs=1e-5)
        assert rb.best_loss == pytest.approx(ra.best_loss, rel=1e-3)
        np.testing.assert_allclose(np.asarray(b(grid)), np.asarray(a(grid)), rtol=1e-3, atol=1e-4)


def test_members_at_one_learning_rate_each_train_as_alone_while_a_stopped_one_stays_in_the_loop():
    # One learning rate for all (an ensemble group): the fused Adam updates the stacked
    # variables, the pruned member's too, and no one else's result may change.
    x, y, xv, yv = _data()
    rate, prune_at = 2e-3, 5
    alone = _models("silu")
    expected = [
        train(
            m,
            x,
            y,
            xv,
            yv,
            batch_size=16,
            learning_rate=rate,
            config=replace(CONFIG, max_epochs=prune_at) if j == 1 else CONFIG,
            seed=seed,
        )
        for j, (m, (_, _, seed)) in enumerate(zip(alone, MEMBERS, strict=True))
    ]
    together = _models("silu")
    results = train_population(
        together,
        x,
        y,
        xv,
        yv,
        batch_size=16,
        learning_rates=[rate] * len(MEMBERS),
        seeds=[seed for _, _, seed in MEMBERS],
        config=CONFIG,
        should_stop=lambda epochs, best, active: [False, epochs >= prune_at, False],
        compact=False,
    )
    assert [r.stopped_by for r in results][1] == "pruned"
    grid = np.random.default_rng(6).uniform(-1.5, 1.5, size=(50, 2)).astype(np.float32)
    for a, b, ra, rb in zip(alone, together, expected, results, strict=True):
        assert (rb.best_epoch, rb.epochs_run) == (ra.best_epoch, ra.epochs_run)
        assert rb.history == pytest.approx(ra.history, rel=1e-3, abs=1e-5)
        np.testing.assert_allclose(np.asarray(b(grid)), np.asarray(a(grid)), rtol=1e-3, atol=1e-4)


def test_members_stop_on_their_own():
    x, y, xv, yv = _data()
    models = _models()
    calls = []

    def prune_second(epochs, best, active):
        calls.append((epochs, active.copy()))
        return [False, True, False]

    results = _train_members_together(models, x, y, xv, yv, should_stop=prune_second)
    assert results[1].stopped_by == "pruned"
    assert results[1].epochs_run == 5
    assert results[0].epochs_run > 5
    # The pruned member is not asked about again.
    assert not calls[-1][1][1]


def test_population_refuses_mixed_shapes_and_dropout():
    x, y, _, _ = _data()
    with pytest.raises(ValueError, match="same depth and width"):
        train_population(
            [build_mlp(2, 2, 8, seed=0), build_mlp(2, 3, 8, seed=1)],
            x,
            y,
            batch_size=16,
            learning_rates=[1e-3, 1e-3],
            seeds=[0, 1],
            config=CONFIG,
        )
    with pytest.raises(ValueError, match="Dense layers only"):
        train_population(
            [build_mlp(2, 2, 8, dropout=0.1, seed=0)],
            x,
            y,
            batch_size=16,
            learning_rates=[1e-3],
            seeds=[0],
            config=CONFIG,
        )
    with pytest.raises(ValueError, match="one learning rate and one seed"):
        train_population(
            [build_mlp(2, 2, 8, seed=0)],
            x,
            y,
            batch_size=16,
            learning_rates=[1e-3, 1e-3],
            seeds=[0],
            config=CONFIG,
        )


def test_networks_of_another_width_and_batch_reuse_the_traced_loop():
    # A search's trials differ in width, batch size and learning rate: with the depth and
    # activation of an earlier one, a trial trains in that one's graph, to the same result.
    x, y, xv, yv = _data()
    first = build_mlp(2, 3, 12, activation="silu", seed=5)
    train_population(
        [first], x, y, xv, yv, batch_size=16, learning_rates=[1e-3], seeds=[5], config=CONFIG
    )
    traced = traced_loops()
    alone, together = (build_mlp(2, 3, 7, activation="silu", seed=6) for _ in range(2))
    expected = train(alone, x, y, xv, yv, batch_size=32, learning_rate=3e-3, config=CONFIG, seed=6)
    (result,) = train_population(
        [together], x, y, xv, yv, batch_size=32, learning_rates=[3e-3], seeds=[6], config=CONFIG
    )
    # And a refit on all points (another number of points, no validation set) reuses it too.
    train_population(
        [build_mlp(2, 3, 9, activation="silu", seed=7)],
        np.concatenate([x, xv]),
        np.concatenate([y, yv]),
        batch_size=8,
        learning_rates=[1e-3],
        seeds=[7],
        config=replace(CONFIG, max_epochs=5),
    )
    assert traced_loops() == traced
    assert result.best_epoch == expected.best_epoch
    assert result.epochs_run == expected.epochs_run
    assert result.stopped_by == expected.stopped_by
    assert result.history == pytest.approx(expected.history, rel=1e-3, abs=1e-5)
    grid = np.random.default_rng(2).uniform(-1.5, 1.5, size=(50, 2)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(together(grid)), np.asarray(alone(grid)), rtol=1e-3, atol=1e-4
    )


def test_the_members_still_training_go_on_in_a_smaller_loop_to_the_same_result():
    # Three of four members are pruned early; the fourth trains on alone. Moving it to a loop
    # of one member (compact) must not change anything but the arithmetic thrown away.
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(80, 3)).astype(np.float32)
    y = np.sin(2 * x[:, 0]) * x[:, 1] + x[:, 2]
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    config = replace(CONFIG, max_epochs=80, patience=80, lr_drop_epoch=40, chunk_epochs=10)
    seeds = [21, 22, 23, 24]

    def run(compact: bool):
        models = [build_mlp(3, 4, 10, activation="tanh", seed=s) for s in seeds]

        def prune_all_but_last(epochs, best, active):
            return [True, True, True, False] if epochs >= 10 else [False] * 4

        results = train_population(
            models,
            x[:60],
            y[:60],
            x[60:],
            y[60:],
            batch_size=16,
            learning_rates=[2e-3] * 4,
            seeds=seeds,
            config=config,
            should_stop=prune_all_but_last,
            compact=compact,
        )
        return models, results

    kept_models, kept = run(compact=False)
    traced = traced_loops()
    moved_models, moved = run(compact=True)
    assert traced_loops() == traced + 1  # the loop of one member, traced once
    assert [r.epochs_run for r in moved] == [10, 10, 10, 80]
    grid = rng.uniform(-1, 1, size=(40, 3)).astype(np.float32)
    for a, b, ra, rb in zip(kept_models, moved_models, kept, moved, strict=True):
        assert (rb.best_epoch, rb.epochs_run, rb.stopped_by) == (
            ra.best_epoch,
            ra.epochs_run,
            ra.stopped_by,
        )
        assert rb.history == pytest.approx(ra.history, rel=1e-5, abs=1e-7)
        np.testing.assert_allclose(np.asarray(b(grid)), np.asarray(a(grid)), rtol=1e-5, atol=1e-6)


def test_mixed_bfloat16_trains_the_hidden_matmuls_in_bfloat16_to_about_the_same_network():
    # Three hidden layers: two hidden-to-hidden matmuls run in bfloat16. The result is not
    # float32's to rounding (bfloat16 keeps 8 bits), but the same fit within a few per cent.
    x, y, xv, yv = _data()
    config = replace(CONFIG, max_epochs=60, patience=60, lr_drop_epoch=40)
    results, outputs = {}, {}
    grid = np.random.default_rng(4).uniform(-1.5, 1.5, size=(50, 2)).astype(np.float32)
    for precision in ("float32", "mixed_bfloat16"):
        model = build_mlp(2, 3, 32, activation="silu", seed=8)
        (results[precision],) = train_population(
            [model],
            x,
            y,
            xv,
            yv,
            batch_size=16,
            learning_rates=[3e-3],
            seeds=[8],
            config=replace(config, precision=precision),
        )
        outputs[precision] = np.asarray(model(grid))[:, 0]
        # Predictions come from the float32 weights, in float32.
        assert model.weights[2].dtype == "float32"
        assert outputs[precision].dtype == np.float32
    exact, mixed = results["float32"], results["mixed_bfloat16"]
    assert mixed.history != pytest.approx(exact.history, rel=1e-4)
    assert mixed.best_loss == pytest.approx(exact.best_loss, rel=0.25)
    assert np.sqrt(np.mean((outputs["mixed_bfloat16"] - outputs["float32"]) ** 2)) < 0.05


# Trains, in a process of its own, one network per depth of the test below and prints what
# the test compares: argv are the data file and the precision.
_TRAIN_BY_DEPTH = """
import json, sys
import numpy as np
from bluesky_digitwin.surrogate.network import build_mlp
from bluesky_digitwin.surrogate.population import train_population
from bluesky_digitwin.surrogate.precision import hidden_matmuls
from bluesky_digitwin.surrogate.training import TrainConfig

arrays = np.load(sys.argv[1])
config = TrainConfig(
    max_epochs=30, patience=30, lr_drop_epoch=20, chunk_epochs=5, precision=sys.argv[2]
)
report = {"hidden_matmuls": hidden_matmuls(config.precision)}
# Two inputs (a scan's axes), and twelve (as Fourier features make them; another first layer).
for depth, inputs in ((1, ""), (3, ""), (1, "_wide")):
    x, xv, grid = (arrays[name + inputs] for name in ("x", "xv", "grid"))
    model = build_mlp(x.shape[1], depth, 32, activation="silu", seed=8)
    (result,) = train_population(
        [model], x, arrays["y"], xv, arrays["yv"], batch_size=16,
        learning_rates=[3e-3], seeds=[8], config=config,
    )
    report[f"{depth}{inputs}"] = {
        "history": result.history,
        "prediction": np.asarray(model(grid))[:, 0].tolist(),
    }
print(json.dumps(report))
"""


def _train_by_depth(tmp_path, precision: str, environment: dict[str, str]) -> dict:
    data = tmp_path / "data.npz"
    if not data.exists():
        x, y, xv, yv = _data()
        grid = np.random.default_rng(4).uniform(-1.5, 1.5, size=(50, 2)).astype(np.float32)

        def wide(points: np.ndarray) -> np.ndarray:
            phase = points @ np.random.default_rng(5).normal(size=(2, 5))
            return np.hstack([points, np.sin(phase), np.cos(phase)]).astype(np.float32)

        np.savez(
            data,
            x=x,
            y=y,
            xv=xv,
            yv=yv,
            grid=grid,
            x_wide=wide(x),
            xv_wide=wide(xv),
            grid_wide=wide(grid),
        )
    out = subprocess.run(
        [sys.executable, "-c", _TRAIN_BY_DEPTH, str(data), precision],
        capture_output=True,
        text=True,
        env={**subprocess_env(), **environment},
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bfloat16_inside_onednn_keeps_the_first_and_last_layers_float32(tmp_path):
    # A process of the package's own (the command line, a search worker) lets oneDNN run every
    # batched float32 matmul in bfloat16, without Cast ops. The first and last layers must not
    # be among them: a network with one hidden layer has no other, so it trains exactly as in
    # float32 (where bfloat16 would move it by about 1e-2). With three hidden layers the
    # result is bfloat16's: the same fit within a few per cent. (On a CPU without bfloat16
    # units oneDNN keeps float32, and the same path runs in float32.)
    exact = _train_by_depth(tmp_path, "float32", {})
    inside = _train_by_depth(tmp_path, "mixed_bfloat16", {FPMATH_ENV: "BF16"})
    assert (exact["hidden_matmuls"], inside["hidden_matmuls"]) == ("float32", "bfloat16_onednn")
    for one in ("1", "1_wide"):  # two inputs, and twelve (Fourier features' first layer)
        assert inside[one]["history"] == pytest.approx(exact[one]["history"], rel=1e-4, abs=1e-6)
        np.testing.assert_allclose(
            inside[one]["prediction"], exact[one]["prediction"], rtol=1e-4, atol=1e-5
        )
    three = "3"
    assert inside[three]["history"][-1] == pytest.approx(exact[three]["history"][-1], rel=0.25)
    difference = np.subtract(inside[three]["prediction"], exact[three]["prediction"])
    assert np.sqrt(np.mean(difference**2)) < 0.05


def test_how_the_hidden_matmuls_run_follows_the_precision_and_the_process(monkeypatch):
    monkeypatch.setattr(precision_module, "native_bfloat16", lambda: True)
    monkeypatch.delenv(FPMATH_ENV, raising=False)
    assert hidden_matmuls("float32") == "float32"
    assert hidden_matmuls("mixed_bfloat16") == "bfloat16_casts"
    monkeypatch.setenv(FPMATH_ENV, "BF16")
    assert hidden_matmuls("mixed_bfloat16") == "bfloat16_onednn"
    # float32 cannot be had where oneDNN runs batched matmuls in bfloat16: say so and how.
    with pytest.raises(ValueError, match=f"{FPMATH_ENV}=BF16 .* unset it before starting Python"):
        hidden_matmuls("float32")
    # Without bfloat16 units oneDNN keeps float32 whatever the switch says.
    monkeypatch.setattr(precision_module, "native_bfloat16", lambda: False)
    assert hidden_matmuls("float32") == "float32"


def test_an_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="auto, float32, mixed_bfloat16"):
        TrainConfig(precision="float16")


def test_networks_with_and_without_l2_share_one_traced_loop():
    # The L2 penalty is a value (zero for none), not a shape of the graph: a search's trials
    # with and without it train in one loop, each to what train() gives it.
    x, y, xv, yv = _data()
    train_population(
        [build_mlp(2, 4, 10, l2=0.0, activation="gelu", seed=30)],
        x,
        y,
        xv,
        yv,
        batch_size=16,
        learning_rates=[1e-3],
        seeds=[30],
        config=CONFIG,
    )
    traced = traced_loops()
    alone, together = (build_mlp(2, 4, 14, l2=1e-3, activation="gelu", seed=31) for _ in range(2))
    expected = train(alone, x, y, xv, yv, batch_size=16, learning_rate=2e-3, config=CONFIG, seed=31)
    (result,) = train_population(
        [together], x, y, xv, yv, batch_size=16, learning_rates=[2e-3], seeds=[31], config=CONFIG
    )
    assert traced_loops() == traced
    assert result.history == pytest.approx(expected.history, rel=1e-3, abs=1e-5)
    grid = np.random.default_rng(5).uniform(-1.5, 1.5, size=(50, 2)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(together(grid)), np.asarray(alone(grid)), rtol=1e-3, atol=1e-4
    )
