"""The Optuna search: repeatable, resumable, warm-startable, parallel on a shared journal."""

from __future__ import annotations

import pickle
import re
import secrets
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
from digitwin_testing import smooth_table, subprocess_env

from bluesky_digitwin.data import DigitwinInputError, prepare_training_data
from bluesky_digitwin.surrogate.ensemble import BestShapeShare, EnsembleRecipe
from bluesky_digitwin.surrogate.search import (
    OtherTrainingError,
    SearchSpace,
    default_batch_sizes,
    open_storage,
    redact_url,
    run_search,
)
from bluesky_digitwin.surrogate.search_settings import SearchStrategy
from bluesky_digitwin.surrogate.training import TrainConfig

TINY = {
    "space": SearchSpace(n_layers=(1, 2), n_units=(4, 16)),
    "train_config": TrainConfig(max_epochs=10, chunk_epochs=5),
}


@pytest.fixture
def data():
    return prepare_training_data(smooth_table(), ["x", "h"], "y")


def _params(study):
    return [t.params for t in study.get_trials(deepcopy=False)]


def test_paper_batch_sizes_by_data_size():
    assert default_batch_sizes(100) == (16, 32, 64)
    assert default_batch_sizes(808) == (64, 128, 256)
    assert default_batch_sizes(2737) == (128, 256, 512)
    assert default_batch_sizes(29977) == (256, 512, 1024)


def test_same_seed_repeats_the_search(data):
    runs = [run_search(data, n_trials=3, n_workers=1, seed=7, **TINY) for _ in range(2)]
    try:
        assert _params(runs[0].study) == _params(runs[1].study)
        values = [[t.value for t in r.study.get_trials()] for r in runs]
        assert values[0] == pytest.approx(values[1], rel=1e-4)
        # The best trials carry their models as artifacts, best first.
        best = runs[0].best_trials
        assert [t.value for t in best] == sorted(t.value for t in best)
        assert all("model_artifact_id" in t.user_attrs for t in best)
    finally:
        for r in runs:
            r.cleanup()


def test_rerun_on_the_same_storage_continues_the_study(data, tmp_path):
    journal = tmp_path / "journal.log"
    first = run_search(data, n_trials=2, n_workers=1, storage=journal, study_name="s", **TINY)
    before = _params(first.study)
    again = run_search(data, n_trials=4, n_workers=1, storage=journal, study_name="s", **TINY)
    trials = again.study.get_trials()
    assert len(trials) == 4
    assert _params(again.study)[:2] == before  # finished trials kept, not repeated
    # Asking for no more than the study already holds runs nothing new.
    third = run_search(data, n_trials=4, n_workers=1, storage=journal, study_name="s", **TINY)
    assert len(third.study.get_trials()) == 4


def test_a_study_refuses_other_data(data, tmp_path):
    journal = tmp_path / "journal.log"
    run_search(data, n_trials=1, n_workers=1, storage=journal, study_name="s", **TINY)
    other = prepare_training_data(smooth_table(seed=1), ["x", "h"], "y")
    with pytest.raises(DigitwinInputError, match="already holds trials for other data"):
        run_search(other, n_trials=2, n_workers=1, storage=journal, study_name="s", **TINY)


def test_a_study_is_not_continued_with_other_training_settings(data, tmp_path):
    # Workers elsewhere train by the study's record; ASHA compares trials at equal epochs.
    journal = tmp_path / "journal.log"
    run_search(data, n_trials=1, n_workers=1, storage=journal, study_name="s", **TINY)
    other = {**TINY, "train_config": replace(TINY["train_config"], reference_points=50)}
    with pytest.raises(OtherTrainingError, match=r"reference_points 8192, not 50") as refused:
        run_search(data, n_trials=2, n_workers=1, storage=journal, study_name="s", **other)
    # It says how to continue, and carries the settings for a front end to say so its way.
    assert "continue it with the same settings (TrainConfig(reference_points=8192))" in str(
        refused.value
    )
    assert (refused.value.searched, refused.value.given) == (
        {"reference_points": 8192},
        {"reference_points": 50},
    )
    assert isinstance(refused.value, DigitwinInputError)
    assert str(pickle.loads(pickle.dumps(refused.value))) == str(refused.value)
    # The same settings continue it.
    again = run_search(data, n_trials=2, n_workers=1, storage=journal, study_name="s", **TINY)
    assert len(again.study.get_trials()) == 2


def test_a_setting_that_changes_nothing_for_this_data_does_not_refuse_the_study(data, tmp_path):
    # A default changed by an upgrade (here the counted epoch's size, from 8192 to 200 points)
    # leaves a 125-point table's training as it was: its study goes on.
    journal = tmp_path / "journal.log"
    run_search(data, n_trials=1, n_workers=1, storage=journal, study_name="s", **TINY)
    upgraded = {**TINY, "train_config": replace(TINY["train_config"], reference_points=200)}
    assert data.n_points < 200
    again = run_search(data, n_trials=2, n_workers=1, storage=journal, study_name="s", **upgraded)
    assert len(again.study.get_trials()) == 2
    # What does change its training still refuses it.
    other = {**TINY, "train_config": replace(TINY["train_config"], patience=3)}
    with pytest.raises(DigitwinInputError, match=r"patience 30, not 3"):
        run_search(data, n_trials=3, n_workers=1, storage=journal, study_name="s", **other)


def test_a_study_searched_at_the_papers_epochs_names_the_setting_that_continues_it(data, tmp_path):
    # Studies searched before the default became 250 epochs trained the paper's 500.
    journal = tmp_path / "journal.log"
    paper = {**TINY, "train_config": TrainConfig.paper(chunk_epochs=5)}
    assert paper["train_config"].max_epochs == 500
    run_search(data, n_trials=1, n_workers=1, storage=journal, study_name="s", **paper)
    default = {**TINY, "train_config": TrainConfig(chunk_epochs=5)}
    with pytest.raises(OtherTrainingError) as refused:
        run_search(data, n_trials=2, n_workers=1, storage=journal, study_name="s", **default)
    message = str(refused.value)
    assert "max_epochs 500, not 250" in message
    assert "(TrainConfig(max_epochs=500))" in message


def test_warm_start_tries_the_given_hyperparameters_first(data):
    warm = {
        "n_layers": 2,
        "n_units": 9,
        "learning_rate": 1e-3,
        "batch_size": 32,
        "regularization": "none",
    }
    strategy = SearchStrategy(warm_start=warm)
    result = run_search(data, n_trials=2, n_workers=1, strategy=strategy, seed=0, **TINY)
    try:
        # Hyperparameters from before activations were searched: the space's only one fills in.
        assert result.study.trials[0].params == {**warm, "activation": "silu"}
    finally:
        result.cleanup()


def test_custom_sampler_and_pruner_are_used(data):
    result = run_search(
        data,
        n_trials=2,
        n_workers=1,
        strategy=SearchStrategy(
            sampler=optuna.samplers.RandomSampler(seed=1), pruner=optuna.pruners.NopPruner()
        ),
        **TINY,
    )
    try:
        assert isinstance(result.study.sampler, optuna.samplers.RandomSampler)
        assert all(t.state.name == "COMPLETE" for t in result.study.trials)
    finally:
        result.cleanup()


def finished_trials_once_any(journal: Path, study_name: str, timeout: float = 120) -> int:
    """Wait (from inside ``beside``) until the spawned worker has finished a trial; how many."""
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    deadline = time.monotonic() + timeout
    while True:
        study = optuna.load_study(study_name=study_name, storage=storage)
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        if finished or time.monotonic() > deadline:
            return len(finished)
        time.sleep(0.2)


@pytest.mark.slow
def test_two_worker_processes_share_a_journal(data, tmp_path):
    journal = tmp_path / "journal.log"

    def after_the_worker_joined(split):
        # Tiny trials can all end here before the spawned worker has imported TensorFlow;
        # this process joins the search once the worker has finished a trial of its own.
        finished_trials_once_any(journal, "par")

    result = run_search(
        data,
        n_trials=12,
        n_workers=2,
        storage=journal,
        study_name="par",
        seed=1,
        beside=after_the_worker_joined,
        **TINY,
    )
    trials = result.study.get_trials()
    assert len([t for t in trials if t.state.is_finished()]) >= 12
    assert len({t.user_attrs["worker"]["pid"] for t in trials if "worker" in t.user_attrs}) == 2
    assert (tmp_path / "journal.log.artifacts").is_dir()


@pytest.mark.slow
def test_work_beside_the_search_runs_while_the_workers_search(data, tmp_path):
    journal = tmp_path / "journal.log"
    seen = {}

    def beside(split):
        # The spawned worker searches meanwhile: wait until it has finished a trial.
        seen["finished_while_beside"] = finished_trials_once_any(journal, "beside")
        seen["split"] = split
        return "reference networks"

    result = run_search(
        data, n_trials=20, n_workers=2, storage=journal, study_name="beside", beside=beside, **TINY
    )
    assert result.beside == "reference networks"
    assert seen["split"] is result.split
    # Beside the search, not after it: the worker had begun, and the search was not over.
    assert 1 <= seen["finished_while_beside"] < 20


def test_work_after_the_search_is_shared_with_the_worker(data, tmp_path):
    recipe = EnsembleRecipe(size=3, reference=False, refit_epochs=0)
    share = BestShapeShare(recipe, (16,), TINY["train_config"])
    result = run_search(data, n_trials=6, n_workers=2, seed=2, after=share, **TINY)
    try:
        # The worker did its part (it left it for this process to read) ...
        assert (result.temp_dir / "data" / "after-1.part").is_file()
        assert [[r.index for r in part] for part in result.after] == [[0, 2], [1]]
        # ... on the same best trial, to the same network this process would have trained.
        (again,) = share(result.split, result.best_trials, 1, 2)
        (done,) = result.after[1]
        assert done.source_trial == result.best_trials[0].number == again.source_trial
        for a, b in zip(done.weights, again.weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    finally:
        result.cleanup()


def test_a_failure_beside_the_search_stops_the_workers(data, tmp_path):
    def beside(split):
        raise RuntimeError("out of memory while training the reference")

    with pytest.raises(RuntimeError, match="out of memory"):
        run_search(data, n_trials=50, n_workers=2, beside=beside, work_dir=tmp_path, **TINY)
    # The workers were stopped and waited for; their inputs are gone.
    assert list(tmp_path.iterdir()) == []


#: The README's "Use it from Python", as a scientist saves it: a script without a main guard.
PLAIN_SCRIPT = """
from digitwin_testing import smooth_table

from bluesky_digitwin import DigitalTwin, EnsembleRecipe
from bluesky_digitwin.surrogate.search import SearchSpace
from bluesky_digitwin.surrogate.training import TrainConfig

smooth_table().to_csv("scans.csv", index=False)
twin = DigitalTwin.fit(
    "scans.csv",
    features=["x", "h"],
    target="y",
    n_trials=30,
    n_workers=2,
    seed=0,
    storage="search.journal",
    study_name="plain",
    ensemble=EnsembleRecipe(size=2),
    space=SearchSpace(n_layers=(1, 2), n_units=(4, 16)),
    train_config=TrainConfig(max_epochs=20, chunk_epochs=5),
)
print("fitted", twin.id)
"""
#: What a terminal may show besides the script's own output: Optuna's per-trial log lines.
OPTUNA_LINE = re.compile(r"^\[[IW] \d{4}-\d\d-\d\d [\d:,]+\] ")


@pytest.mark.slow
def test_a_script_without_a_main_guard_searches_on_two_workers(tmp_path):
    script = tmp_path / "fit_scans.py"
    script.write_text(PLAIN_SCRIPT)
    run = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = run.communicate(timeout=600)
    finally:
        run.kill()
    assert run.returncode == 0, stderr
    assert re.fullmatch(r"fitted [0-9a-f]{32}\n", stdout), stdout
    # Nothing but Optuna's progress lines: no bootstrapping traceback, no failed worker, no
    # TensorFlow start-up chatter.
    for text in ("Traceback", "exited with an error", "oneDNN", "cuInit", "cuda", "TensorFlow"):
        assert text not in stderr
    # A twin this tiny may also be told, as a warning, that it is no better than interpolation.
    lines = stderr.splitlines()
    told = [i for i, line in enumerate(lines) if "TwinNotBetterWarning" in line]
    lines = [line for i, line in enumerate(lines) if i not in told and i - 1 not in told]
    assert [line for line in lines if not OPTUNA_LINE.match(line)] == []
    # Both processes trained trials: the script's own and one worker.
    study = optuna.load_study(study_name="plain", storage=open_storage(tmp_path / "search.journal"))
    pids = {t.user_attrs["worker"]["pid"] for t in study.trials if "worker" in t.user_attrs}
    assert run.pid in pids and len(pids) == 2


class ScriptSampler(optuna.samplers.RandomSampler):
    """A sampler class as a script would define it (in ``__main__``)."""


ScriptSampler.__module__ = "__main__"


def test_a_sampler_defined_in_the_script_is_refused_before_workers_start(data, tmp_path):
    with pytest.raises(DigitwinInputError, match="ScriptSampler is defined in the script"):
        run_search(
            data,
            n_trials=2,
            n_workers=2,
            storage=tmp_path / "j.log",
            strategy=SearchStrategy(sampler=ScriptSampler()),
        )


def test_work_after_the_search_defined_in_the_script_is_refused_before_workers_start(data):
    def after(split, trials, part, parts):
        return part

    after.__module__ = "__main__"  # as a function of the user's script is
    with pytest.raises(DigitwinInputError, match="custom after function is defined in the"):
        run_search(data, n_trials=2, n_workers=2, after=after, **TINY)


def test_several_workers_need_a_shareable_storage(data):
    with pytest.raises(DigitwinInputError, match="storage they can all open"):
        run_search(data, n_trials=2, n_workers=2, storage=optuna.storages.InMemoryStorage())


def test_database_passwords_are_redacted():
    password = secrets.token_hex(8)  # made up here: no credential lives in the repo
    assert redact_url(f"postgresql://me:{password}@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert redact_url("sqlite:///tmp/x.db") == "sqlite:///tmp/x.db"


def test_an_unreachable_database_is_one_clear_line_without_the_password():
    password = secrets.token_hex(8)
    # Port 1 on loopback: nothing listens, the driver fails at once.
    with pytest.raises(DigitwinInputError) as error:
        open_storage(f"postgresql://me:{password}@127.0.0.1:1/digitwin")
    message = str(error.value)
    assert password not in message
    assert "postgresql://me:***@127.0.0.1:1/digitwin" in message
    assert "PGPASSWORD" in message and len(message.splitlines()) == 1


def test_line_holdout_keeps_whole_interior_lines_out(data):
    from bluesky_digitwin.surrogate.search import SplitData

    split = SplitData.split(data, 0.2, seed=3, holdout="lines")
    h_val = split.x_val[:, 1] * split.scaling.x_std[1] + split.scaling.x_mean[1]
    h_train = split.x_train[:, 1] * split.scaling.x_std[1] + split.scaling.x_mean[1]
    held = set(np.round(h_val, 6))
    assert len(held) == 1  # 20% of 5 lines
    assert held <= {0.5, 1.0, 1.5}  # an interior line: choosing on interpolation
    assert not held & set(np.round(h_train, 6))
    assert len(split.y_val) + len(split.y_train) == data.n_points
    with pytest.raises(DigitwinInputError, match="holdout must be"):
        SplitData.split(data, 0.2, seed=3, holdout="fields")


class _BrokenSpace(SearchSpace):
    def suggest(self, trial, n_points):
        raise RuntimeError("this space is broken on purpose")


def test_a_search_where_every_trial_fails_says_so_and_leaves_nothing_behind(data, tmp_path):
    with pytest.raises(RuntimeError, match=r"no trial of study .* completed \(2 trials: FAIL\)"):
        run_search(data, n_trials=2, n_workers=1, space=_BrokenSpace(), work_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
