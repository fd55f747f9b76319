"""The DigitalTwin: fit, predict with uncertainty, flag extrapolation, save and load safely."""

from __future__ import annotations

import json
import warnings

import numpy as np
import optuna
import pandas as pd
import pytest
import xarray as xr
from digitwin_testing import smooth_table

from bluesky_digitwin import (
    DigitalTwin,
    DigitwinInputError,
    EnsembleRecipe,
    OutsideRangeWarning,
    TwinNotBetterWarning,
    make_grid,
)
from bluesky_digitwin.resolution import UnresolvedStepWarning
from bluesky_digitwin.sim import FirstOrderMagnet
from bluesky_digitwin.sim.materials import isofield_scans
from bluesky_digitwin.surrogate import precision
from bluesky_digitwin.surrogate.precision import resolve_precision
from bluesky_digitwin.surrogate.search import SearchSpace
from bluesky_digitwin.surrogate.search_settings import SearchStrategy
from bluesky_digitwin.surrogate.training import TrainConfig
from bluesky_digitwin.twin import EnsembleWarning

FAST = {
    "strategy": SearchStrategy(pruner=optuna.pruners.NopPruner()),  # a full ensemble
    "space": SearchSpace(n_layers=(2, 3), n_units=(16, 32), l2=None),
    "train_config": TrainConfig(max_epochs=60, chunk_epochs=10),
    "n_workers": 1,
}


#: The module twin's fit: four trials, three networks, seed 0, one worker.
SMOOTH_FIT = {"n_trials": 4, "ensemble": EnsembleRecipe(size=3), "seed": 0, **FAST}


def _smooth_dataset() -> xr.Dataset:
    data = xr.Dataset.from_dataframe(smooth_table())
    data["x"].attrs["units"] = "mm"
    return data


@pytest.fixture(scope="module")
def twin() -> DigitalTwin:
    return DigitalTwin.fit(
        _smooth_dataset(),
        ["x", "h"],
        "y",
        units={"y": "V"},
        provenance={"run_uids": ["abc"]},
        **SMOOTH_FIT,
    )


def test_one_worker_and_a_seed_give_the_same_twin_again(twin):
    # What `digitwin fit --seed` promises with --workers 1 (with several, trials finish in an
    # order that depends on timing).
    again = DigitalTwin.fit(_smooth_dataset(), ["x", "h"], "y", **SMOOTH_FIT)
    grid = {"x": np.linspace(0.0, 1.0, 7), "h": np.linspace(0.0, 2.0, 7)}
    first, second = twin.predict(grid), again.predict(grid)
    np.testing.assert_array_equal(first["y"].values, second["y"].values)
    np.testing.assert_array_equal(first["y_std"].values, second["y_std"].values)


def test_fit_records_what_it_learned(twin):
    meta = twin.metadata
    assert twin.features == ("x", "h")
    assert twin.units == {"x": "mm", "h": "", "y": "V"}
    assert twin.ranges["h"] == (0.0, 2.0)
    assert twin.ensemble_size == 3
    assert meta["search"]["n_trials"] >= 4
    assert meta["provenance"] == {"run_uids": ["abc"]}
    assert len(meta["data"]["sha256"]) == 64
    assert {"tensorflow", "keras", "optuna"} <= set(meta["versions"])
    # New networks of the best trial's hyperparameters first, then the reference network.
    assert [m["trial"] is None for m in meta["members"]] == [False, False, True]
    assert meta["members"][0]["params"] == meta["members"][1]["params"]
    assert meta["search"]["ensemble"] == {
        "size": 3,
        "configurations": 1,
        "reference": True,
        "retrain": True,
        "reference_activation": "silu",
        "reference_shape": (5, 160),
        "reference_l2": 0.0,
        "reference_steps": 10,
        "trial_activation": None,
        "trial_rate_cap": 0.001,
        "tolerance": None,
        "max_epochs": 250,
        "refit_epochs": 100,
        "refit_rate": 1.0,
    }
    # The recipe's tolerance and refit as the twin.json of earlier versions recorded them too.
    assert (meta["search"]["ensemble_tolerance"], meta["search"]["refit_epochs"]) == (None, 100)
    # "auto" as this machine's CPU resolves it, beside the option as given.
    assert meta["search"]["train_config"]["precision"] == "auto"
    assert meta["search"]["precision"] == resolve_precision("auto")
    holdout = twin.holdout
    assert holdout.held_out == "points" and holdout.n_points == meta["data"]["n_points"] // 5
    assert set(holdout.baselines) == {"linear", "thin-plate RBF"}
    assert np.isfinite(holdout.twin_rmse) and 0.0 < holdout.twin_r2 <= 1.0
    # The twin's validation is its networks' mean on the held-out points, not its first's.
    assert twin.validation_rmse == holdout.twin_rmse
    assert f"validation RMSE {holdout.twin_rmse:.4g}" in repr(twin)
    assert meta["unresolved_steps"] == [] and twin.unresolved_steps == []  # smooth data
    assert set(twin.hyperparameters) >= {"n_layers", "n_units", "learning_rate", "batch_size"}
    assert "DigitalTwin y(x, h)" in repr(twin)


def test_a_jump_inside_one_step_is_told_before_the_search_and_recorded(tmp_path):
    """A first-order jump measured at a 1 K step: the fit says where, from the user's call."""
    data = isofield_scans(FirstOrderMagnet(), [100.0, 1e4, 5e4], np.linspace(20, 50, 31), seed=0)
    with pytest.warns(UnresolvedStepWarning) as told:
        twin = DigitalTwin.fit(
            data, ["T", "H"], "M", n_trials=1, ensemble=EnsembleRecipe.paper(size=1), **FAST
        )
    (warning,) = [w for w in told if w.category is UnresolvedStepWarning]
    assert warning.filename == __file__
    assert str(warning.message).startswith(
        "M jumps within one step of T on 2 line(s) (H = 100, 10000 Oe; the largest, "
    )
    steps = twin.unresolved_steps
    assert [(s.line_feature, s.line, s.along, s.stop - s.start) for s in steps] == [
        ("H", 100.0, "T", 1.0),
        ("H", 10000.0, "T", 1.0),
    ]
    largest = max(steps, key=lambda s: s.share)
    assert f"between T = {largest.start:.5g} and {largest.stop:.5g} K)" in str(warning.message)
    assert DigitalTwin.load(twin.save(tmp_path / "twin")).unresolved_steps == steps


def test_predict_on_a_grid_gives_labelled_mean_and_spread(twin):
    grid = make_grid(x=np.linspace(0.1, 0.9, 9), h=[0.0, 1.0, 2.0])
    pred = twin.predict(grid)
    assert pred["y"].dims == ("x", "h")
    assert pred["y"].shape == (9, 3)
    np.testing.assert_array_equal(pred["x"].values, grid["x"].values)
    assert pred["y"].attrs["units"] == "V"
    assert pred["x"].attrs["units"] == "mm"
    assert "units" not in pred["h"].attrs  # unknown units are left out, not ""
    assert pred.attrs["data_origin"] == "simulated"
    assert pred.attrs["twin_id"] == twin.id
    assert (pred["y_std"] >= 0).all() and (pred["y_std"] > 0).any()
    assert not pred["outside_range"].any()
    # It learned the function, roughly (a tiny search): within the target's spread.
    xx, hh = np.meshgrid(grid["x"].values, grid["h"].values, indexing="ij")
    truth = np.tanh(4 * (xx - 0.3 - 0.2 * hh)) + 0.5 * hh
    assert float(np.sqrt(np.mean((pred["y"].values - truth) ** 2))) < 0.25


def test_select_gives_a_twin_of_some_networks(twin):
    points = {"x": np.array([0.1, 0.5]), "h": np.array([1.0, 2.0])}
    members = twin.predict_members(points).values
    last = twin.select([twin.ensemble_size - 1])
    assert last.ensemble_size == 1
    np.testing.assert_allclose(last.predict(points)["y"].values, members[-1], rtol=1e-6)
    assert last.metadata["members"] == twin.metadata["members"][-1:]
    assert twin.ensemble_size > 1  # the twin itself is unchanged
    with pytest.raises(DigitwinInputError, match="indices of the twin's"):
        twin.select([twin.ensemble_size])
    with pytest.raises(DigitwinInputError, match="indices of the twin's"):
        twin.select([])


def test_predict_takes_dicts_and_frames(twin):
    from_dict = twin.predict({"x": [0.2, 0.4], "h": [1.0, 1.0]})
    from_frame = twin.predict(pd.DataFrame({"h": [1.0, 1.0], "x": [0.2, 0.4]}))
    assert from_dict["y"].dims == ("point",)
    np.testing.assert_allclose(from_dict["y"], from_frame["y"])
    with pytest.raises(DigitwinInputError, match="lack 'h'"):
        twin.predict({"x": [0.2]})


def test_outside_the_learned_range_is_flagged_and_warned(twin):
    with pytest.warns(OutsideRangeWarning, match="1 of 2 points lie outside"):
        pred = twin.predict({"x": [0.5, 0.5], "h": [1.0, 3.0]})
    assert pred["outside_range"].values.tolist() == [False, True]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        twin.predict({"x": [0.5], "h": [3.0]}, warn=False)


def test_save_and_load_round_trip(twin, tmp_path):
    path = twin.save(tmp_path / "twin")
    assert sorted(p.name for p in path.iterdir()) == [
        "member_0.keras",
        "member_1.keras",
        "member_2.keras",
        "twin.json",
    ]
    loaded = DigitalTwin.load(path)
    grid = make_grid(x=[0.25, 0.5], h=[0.5])
    xr.testing.assert_allclose(loaded.predict(grid), twin.predict(grid))
    assert loaded.metadata["members"][0]["params"] == twin.metadata["members"][0]["params"]
    # Saving again over a saved twin replaces it whole; no staging directories are left.
    twin.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twin"]


def test_a_damaged_twin_does_not_load(twin, tmp_path):
    path = twin.save(tmp_path / "twin")
    with open(path / "member_1.keras", "r+b") as f:
        f.truncate(100)
    with pytest.raises(DigitwinInputError, match="checksum"):
        DigitalTwin.load(path)
    (path / "twin.json").write_text("{not json")
    with pytest.raises(DigitwinInputError, match="not valid JSON"):
        DigitalTwin.load(path)
    with pytest.raises(DigitwinInputError, match="no saved twin"):
        DigitalTwin.load(tmp_path)


@pytest.mark.parametrize("file", ["../outside.keras", "/etc/passwd", "sub/member.keras", 7])
def test_a_twin_json_cannot_point_outside_its_directory(twin, tmp_path, file):
    path = twin.save(tmp_path / "twin")
    meta = json.loads((path / "twin.json").read_text())
    meta["members"][0]["file"] = file
    (path / "twin.json").write_text(json.dumps(meta))
    with pytest.raises(DigitwinInputError, match=r"member file .* is not allowed"):
        DigitalTwin.load(path)


def test_save_refuses_to_replace_other_directories(twin, tmp_path):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(DigitwinInputError, match=r"holds files that are not part of a saved twin"):
        twin.save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "precious"
    (tmp_path / "file").write_text("precious")
    with pytest.raises(DigitwinInputError, match="is a file, not a directory"):
        twin.save(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "precious"


def test_saving_over_a_twin_keeps_every_file_that_is_not_the_twins(twin, tmp_path):
    """A project directory holding a twin *and* its data, notes and figures is not replaced."""
    project = twin.save(tmp_path / "project")
    (project / "scans.csv").write_text("x,h,y\n")
    (project / "figures").mkdir()
    (project / "figures" / "map.png").write_bytes(b"png")
    before = sorted(p.name for p in project.iterdir())
    with pytest.raises(DigitwinInputError, match=r"\(figures, scans.csv\); saving there would"):
        twin.save(project)
    assert sorted(p.name for p in project.iterdir()) == before
    assert (project / "figures" / "map.png").read_bytes() == b"png"
    DigitalTwin.load(project)  # the twin there is intact too
    # A twin.json that names no members leaves every other file foreign.
    (project / "scans.csv").unlink()
    (project / "figures" / "map.png").unlink()
    (project / "figures").rmdir()
    (project / "twin.json").write_text("{not json")
    with pytest.raises(DigitwinInputError, match=r"\(member_0.keras, member_1.keras, member_2"):
        twin.save(project)


def test_twin_json_has_no_pickle_and_is_plain_json(twin, tmp_path):
    path = twin.save(tmp_path / "twin")
    meta = json.loads((path / "twin.json").read_text())
    assert meta["format"] == "bluesky-digitwin/twin"
    assert all(m["file"].endswith(".keras") for m in meta["members"])


@pytest.fixture(scope="module")
def single() -> DigitalTwin:
    """A twin of one network: asked for two, one trial run."""
    with pytest.warns(EnsembleWarning, match=r"only 1 trial.* \(with one it has none: y_std"):
        small = DigitalTwin.fit(
            smooth_table(), ["x", "h"], "y", n_trials=1, ensemble=EnsembleRecipe.paper(2), **FAST
        )
    assert small.ensemble_size == 1
    return small


def test_one_network_has_no_uncertainty_not_zero(single, twin):
    """Its spread is NaN everywhere, extrapolated points included, and the attrs say why."""
    with pytest.warns(OutsideRangeWarning):
        pred = single.predict({"x": [0.5, 0.5, 5.0], "h": [1.0, 3.0, 1.0]})
    assert np.isfinite(pred["y"]).all()
    assert np.isnan(pred["y_std"]).all()
    assert pred["y_std"].attrs["uncertainty"].startswith("not estimated (NaN): a twin of one")
    assert single.uncertainty == pred["y_std"].attrs["uncertainty"]
    # An ensemble says what its spread is.
    spread = twin.predict({"x": [0.5], "h": [1.0]})["y_std"]
    assert spread.attrs["uncertainty"] == "standard deviation of the predictions of 3 networks"


def test_one_network_twin_still_serves_its_consumers(single):
    """NaN spread where the spread is shown; everything else works: a step suggestion (and its
    JSON), a simulated run on a real RunEngine, the lines plot."""
    import matplotlib

    matplotlib.use("Agg")
    from bluesky import RunEngine

    from bluesky_digitwin.analysis.steps import suggest_step
    from bluesky_digitwin.plans import simulate_scan
    from bluesky_digitwin.plot import plot_lines

    suggestion = suggest_step(single, "h", [0.25, 0.5], sweep_points=21)
    assert suggestion.step in (0.25, 0.5)
    json.dumps(suggestion.to_dict(), allow_nan=False)

    events = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: events.extend(doc["data"]["y_std"]), "event_page")
    grid = make_grid(h=[0.5, 1.0], x=np.linspace(0.1, 0.9, 5))
    RE(simulate_scan(single, grid))
    assert len(events) == 10 and np.isnan(events).all()

    figure = plot_lines(smooth_table(), single.predict(grid), fast="x", slow="h")
    assert figure.axes


def test_networks_far_worse_than_the_best_stay_out_of_the_ensemble():
    with pytest.warns(UserWarning, match="within 1x the best"):
        twin = DigitalTwin.fit(
            smooth_table(),
            ["x", "h"],
            "y",
            n_trials=3,
            ensemble=EnsembleRecipe(size=3, retrain=False, tolerance=1.0),
            seed=0,
            **FAST,
        )
    assert twin.ensemble_size == 1  # only the best is within 1x of itself


def test_a_fit_without_a_recipe_takes_the_papers_for_more_points_than_the_reference():
    # smooth_table has more points than this reference size: the regime of a large map.
    config = TrainConfig(max_epochs=20, chunk_epochs=10, reference_points=50)
    table = smooth_table()
    assert len(table) > config.reference_points
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EnsembleWarning)
        twin = DigitalTwin.fit(
            table, ["x", "h"], "y", n_trials=3, seed=0, **{**FAST, "train_config": config}
        )
    recorded = twin.metadata["search"]["ensemble"]
    assert recorded["retrain"] is False and recorded["size"] == 5
    assert all(member["trial"] is not None for member in twin.metadata["members"])


def test_bad_ensemble_size():
    # A keyword of an earlier version says where it went, before any work.
    with pytest.raises(DigitwinInputError, match=r"ensemble_size -> ensemble=EnsembleRecipe\(size"):
        DigitalTwin.fit(smooth_table(), ["x", "h"], "y", ensemble_size=0)
    with pytest.raises(DigitwinInputError, match="takes no keyword 'ensembel'"):
        DigitalTwin.fit(smooth_table(), ["x", "h"], "y", ensembel=EnsembleRecipe())
    with pytest.raises(DigitwinInputError, match="ensemble must be an EnsembleRecipe"):
        DigitalTwin.fit(smooth_table(), ["x", "h"], "y", ensemble={"size": 3})
    with pytest.raises(DigitwinInputError, match="at least one network"):
        DigitalTwin.fit(smooth_table(), ["x", "h"], "y", ensemble=EnsembleRecipe(size=0))


def test_bad_shape_knowledge_and_activations_are_one_clear_error_each():
    table = smooth_table()
    with pytest.raises(DigitwinInputError, match="'T', which is not a feature"):
        DigitalTwin.fit(table, ["x", "h"], "y", monotonic={"T": "increasing"})
    with pytest.raises(DigitwinInputError, match="'increasing' or 'decreasing', got 'up'"):
        DigitalTwin.fit(table, ["x", "h"], "y", monotonic={"h": "up"})
    with pytest.raises(DigitwinInputError, match="unknown activation 'sigmoidal'"):
        SearchSpace(activations=("relu", "sigmoidal"))
    with pytest.raises(DigitwinInputError, match="non-empty tuple"):
        SearchSpace(activations="silu")


def test_float32_where_onednn_would_round_to_bfloat16_is_refused_before_the_search(
    monkeypatch, tmp_path
):
    # The user started Python with oneDNN's bfloat16 switch on a CPU that has the units: every
    # batched float32 matmul of the process is bfloat16, so float32 cannot be had. Said at
    # once, with the fix, not by a worker after the search has started.
    monkeypatch.setattr(precision, "native_bfloat16", lambda: True)
    monkeypatch.setenv(precision.FPMATH_ENV, "BF16")
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    journal = tmp_path / "search.journal"
    with pytest.raises(DigitwinInputError, match="unset it before starting Python"):
        DigitalTwin.fit(
            smooth_table(),
            ["x", "h"],
            "y",
            train_config=TrainConfig(precision="float32"),
            storage=journal,
        )
    assert not journal.exists()  # no search was started


@pytest.mark.filterwarnings("ignore::bluesky_digitwin.holdout.TwinNotBetterWarning")
def test_the_twins_networks_train_the_recipes_epochs_and_the_trials_their_own():
    # No early stop: every network runs to its cap. The reference trains beside the search,
    # the best trial's networks after it; both take the recipe's cap, the trials do not.
    config = TrainConfig(max_epochs=20, chunk_epochs=5, patience=1000, lr_drop_epoch=1000)
    storage = optuna.storages.InMemoryStorage()
    twin = DigitalTwin.fit(
        smooth_table(),
        ["x", "h"],
        "y",
        n_trials=2,
        ensemble=EnsembleRecipe(size=4, max_epochs=10, refit_epochs=2),
        seed=0,
        storage=storage,
        **{**FAST, "train_config": config},
    )
    members = twin.metadata["members"]
    assert sorted(m["trial"] is None for m in members) == [False, False, True, True]
    assert [m["epochs_run"] for m in members] == [10] * 4
    trials = optuna.load_study(study_name=twin.metadata["search"]["study_name"], storage=storage)
    assert {max(t.intermediate_values) for t in trials.get_trials()} == {20}
    assert twin.metadata["search"]["ensemble"]["max_epochs"] == 10


@pytest.mark.filterwarnings("ignore::bluesky_digitwin.holdout.TwinNotBetterWarning")
def test_stated_shape_and_smooth_activations_reach_every_network():
    twin = DigitalTwin.fit(
        smooth_table(),
        ["x", "h"],
        "y",
        n_trials=2,
        ensemble=EnsembleRecipe(size=3, reference_activation=("silu", "relu")),
        seed=0,
        monotonic={"h": "Increasing"},
        **{**FAST, "space": SearchSpace(n_layers=(2, 2), n_units=(8, 16), activations=("tanh",))},
    )
    search = twin.metadata["search"]
    assert search["monotonic"] == {"h": "Increasing"}
    assert [list(pair) for pair in search["train_config"]["monotonic"]] == [[1, 1]]
    # The search's choice for its third, then one reference network of each activation.
    members = twin.metadata["members"]
    assert [(m["trial"] is None, m["params"]["activation"]) for m in members] == [
        (False, "tanh"),
        (True, "silu"),
        (True, "relu"),
    ]
    assert list(twin.metadata["search"]["ensemble"]["reference_activation"]) == ["silu", "relu"]


def _without(key):
    def change(meta):
        del meta[key]
        return meta

    return change


def _set(key, value):
    def change(meta):
        meta[key] = value
        return meta

    return change


def _member_without(key):
    def change(meta):
        del meta["members"][0][key]
        return meta

    return change


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda meta: [meta], "it holds a list, not a JSON object"),
        (_without("members"), "'members' is missing"),
        (_without("features"), "'features' is missing"),
        (_set("members", []), "'members' is empty"),
        (_set("members", {"a": 1}), "'members' must be a list of JSON objects"),
        (_set("features", "xh"), "'features' must be a list of names"),
        (_set("format_version", "one"), "'format_version' must be a whole number, not 'one'"),
        (_set("ranges", {"x": [0, 1]}), "'ranges' must give a (min, max) for every feature"),
        (_member_without("sha256"), "member 0 has no 'sha256'"),
        (_member_without("file"), "member 0 has no 'file'"),
        (_member_without("params"), "member 0 has no 'params'"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_tampered_twin_json_is_one_clear_typed_error(twin, tmp_path, change, problem):
    from bluesky_digitwin.twin import TwinFileError

    path = twin.save(tmp_path / "twin")
    meta = json.loads((path / "twin.json").read_text())
    (path / "twin.json").write_text(json.dumps(change(meta)))
    with pytest.raises(TwinFileError) as raised:
        DigitalTwin.load(path)
    message = str(raised.value)
    assert message == (
        f"{path / 'twin.json'} is damaged or was edited: {problem}; save the twin again or "
        "restore it from a copy"
    )
    assert isinstance(raised.value, DigitwinInputError)


def _replace_member(path, data: bytes):
    """Put ``data`` in place of member 0, with a matching checksum in twin.json."""
    import hashlib

    (path / "member_0.keras").write_bytes(data)
    meta = json.loads((path / "twin.json").read_text())
    meta["members"][0]["sha256"] = hashlib.sha256(data).hexdigest()
    (path / "twin.json").write_text(json.dumps(meta))


def test_a_member_that_holds_code_is_refused_without_advice_to_run_it(twin, tmp_path):
    """A Lambda layer (arbitrary code) with a matching checksum: refused by Keras' safe_mode,
    in one line of ours, never Keras' advice to pass safe_mode=False."""
    from bluesky_digitwin.tensorflow_runtime import keras
    from bluesky_digitwin.twin import TwinFileError

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x[:, :1] * 2)(inputs))
    model.save(tmp_path / "lambda.keras")
    path = twin.save(tmp_path / "twin")
    _replace_member(path, (tmp_path / "lambda.keras").read_bytes())
    with pytest.raises(TwinFileError) as raised:
        DigitalTwin.load(path)
    message = str(raised.value)
    assert message.startswith(f"{path / 'member_0.keras'} holds code (a Lambda layer")
    assert "safe_mode" not in message and "unsafe" not in message
    assert "\n" not in message


def test_a_garbage_member_with_a_matching_checksum_is_not_called_missing(twin, tmp_path):
    from bluesky_digitwin.twin import TwinFileError

    path = twin.save(tmp_path / "twin")
    _replace_member(path, b"\x00garbage" * 100)
    with pytest.raises(TwinFileError) as raised:
        DigitalTwin.load(path)
    message = str(raised.value)
    assert message == (
        f"{path / 'member_0.keras'} is not a Keras model file bluesky-digitwin can read; the "
        "twin is damaged: save it again or restore it from a copy"
    )
    # A member that is really missing says so.
    (path / "member_0.keras").unlink()
    with pytest.raises(TwinFileError, match=r"member_0.keras is missing; the twin is incomplete"):
        DigitalTwin.load(path)


def test_a_twin_left_aside_by_an_earlier_version_killed_mid_save_comes_back(twin, tmp_path):
    """Versions before the recoverable swap, killed between their two renames, left the old twin
    in ``.NAME.old.XXXXXXXX/twin`` and the new one in ``.NAME.XXXXXXXX``: load finds the old
    one (and deletes nothing it cannot tell is ours)."""
    path = twin.save(tmp_path / "twin")
    aside = tmp_path / ".twin.old.k3j_x9qa"
    aside.mkdir()
    path.rename(aside / "twin")
    staging = tmp_path / ".twin.ab12cd34"
    staging.mkdir()
    assert DigitalTwin.load(path).id == twin.id
    assert sorted(p.name for p in tmp_path.iterdir()) == [".twin.ab12cd34", "twin"]


def test_a_twin_saved_without_the_comparison_gives_its_first_networks_validation(twin):
    older = twin.select(range(twin.ensemble_size))
    del older.metadata["holdout"]  # as twins saved before the comparison was recorded
    assert older.validation_rmse == twin.metadata["members"][0]["validation_rmse"]


@pytest.mark.parametrize(
    ("reference_points", "fourier_scale", "advised"),
    [
        (8192, None, "digitwin compare --reference"),  # a small table: not Fourier features
        (50, None, "fourier_scale="),  # a large map, as measured on the 30 k-point one
        (50, 1.0, "digitwin compare --reference"),  # it has them already
    ],
)
def test_a_twin_no_better_than_linear_is_advised_for_its_size_and_inputs(
    reference_points, fourier_scale, advised
):
    # Straight along every line: linear interpolation is exact at held-out points on them.
    table = smooth_table()
    table["y"] = 2.0 * table["x"] + table["h"]
    with pytest.warns(TwinNotBetterWarning) as caught:
        DigitalTwin.fit(
            table,
            ["x", "h"],
            "y",
            n_trials=2,
            ensemble=EnsembleRecipe(size=2),
            seed=0,
            **{
                **FAST,
                "strategy": SearchStrategy(
                    pruner=optuna.pruners.NopPruner(), fourier_scale=fourier_scale
                ),
                "train_config": TrainConfig(
                    max_epochs=20, chunk_epochs=10, reference_points=reference_points
                ),
            },
        )
    (message,) = [str(w.message) for w in caught if w.category is TwinNotBetterWarning]
    assert advised in message
    assert ("fourier_scale=" in message) == (advised == "fourier_scale=")
