"""Workers that join a study with nothing but its storage and name; searches that lose nothing.

Real parts only: journal files, real worker processes, SIGKILL. The PostgreSQL version of the
distributed search is tests/surrogate/test_workers_postgres.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from digitwin_testing import freeze_when, smooth_table, subprocess_env, wait_for

from bluesky_digitwin.data import DigitwinInputError, prepare_training_data
from bluesky_digitwin.surrogate.recovery import count_finished
from bluesky_digitwin.surrogate.search import STUDY_RECORD, SearchSpace, open_storage, run_search
from bluesky_digitwin.surrogate.training import TrainConfig
from bluesky_digitwin.surrogate.workers import run_worker

TINY = {
    "space": SearchSpace(n_layers=(1, 2), n_units=(4, 16)),
    "train_config": TrainConfig(max_epochs=10, chunk_epochs=5),
}
#: A search whose trials last a few seconds each (no early stop, no pruning), so that a process
#: can be killed in the middle of one.
SLOW_SEARCH = """
import sys
from digitwin_testing import smooth_table
from bluesky_digitwin.data import prepare_training_data
from bluesky_digitwin.surrogate.search import SearchSpace, run_search
from bluesky_digitwin.surrogate.search_settings import SearchStrategy
from bluesky_digitwin.surrogate.training import TrainConfig
import optuna

data = prepare_training_data(smooth_table(), ["x", "h"], "y")
run_search(
    data,
    n_trials=int(sys.argv[3]),
    n_workers=int(sys.argv[4]),
    storage=sys.argv[1],
    study_name=sys.argv[2],
    seed=0,
    space=SearchSpace(n_layers=(2, 3), n_units=(32, 64)),
    train_config=TrainConfig(max_epochs=150, patience=150, lr_drop_epoch=150, chunk_epochs=5),
    strategy=SearchStrategy(pruner=optuna.pruners.NopPruner()),
).cleanup()
"""


@pytest.fixture(scope="module")
def data():
    return prepare_training_data(smooth_table(), ["x", "h"], "y")


def _trials(journal: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    if not journal.exists():
        return []
    try:
        loaded = optuna.load_study(study_name=study, storage=open_storage(journal))
    except KeyError:  # the study is not created yet
        return []
    return loaded.get_trials(deepcopy=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped) is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_worker_joins_with_nothing_but_the_storage_and_the_study_name(data, tmp_path):
    journal = tmp_path / "search.journal"
    first = run_search(data, n_trials=2, n_workers=1, storage=journal, study_name="s", **TINY)
    first.cleanup()
    record = first.study.user_attrs[STUDY_RECORD]
    # The study says what to search and where the data and the trial models are.
    assert record["data"]["kind"] == "artifact"
    assert record["artifacts"] == {
        "kind": "filesystem",
        "path": str(tmp_path / "search.journal.artifacts"),
    }
    assert record["n_trials"] == 2

    # The caller hears of the record once, before the worker trains anything.
    heard = []

    def joined(study_record):
        trials = optuna.load_study(study_name="s", storage=open_storage(journal)).get_trials()
        heard.append((study_record.n_trials, len(trials)))

    report = run_worker(journal, "s", n_trials=5, on_joined=joined)
    assert heard == [(2, 2)]
    assert (report.trials_run, report.finished, report.n_trials) == (3, 5, 5)
    study = optuna.load_study(study_name="s", storage=open_storage(journal))
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 5
    # The worker's models went where the coordinator builds the twin from.
    artifacts = tmp_path / "search.journal.artifacts"
    assert all((artifacts / t.user_attrs["model_artifact_id"]).is_file() for t in trials)

    # A twin is built from the best trials wherever they ran: the coordinator, asked again for
    # five trials, finds them all finished and runs nothing.
    again = run_search(data, n_trials=5, n_workers=1, storage=journal, study_name="s", **TINY)
    again.cleanup()
    assert len(again.study.get_trials()) == 5
    assert len(again.best_trials) == 5


def test_a_worker_says_which_studies_exist_when_the_name_is_wrong(data, tmp_path):
    journal = tmp_path / "search.journal"
    run_search(data, n_trials=1, n_workers=1, storage=journal, study_name="erco2", **TINY).cleanup()
    with pytest.raises(DigitwinInputError, match=r"no study 'ErCo2'.*studies there: erco2"):
        run_worker(journal, "ErCo2")


def test_a_worker_says_where_to_mount_the_trial_models(data, tmp_path):
    journal = tmp_path / "search.journal"
    run_search(data, n_trials=1, n_workers=1, storage=journal, study_name="s", **TINY).cleanup()
    moved = tmp_path / "mounted-elsewhere"
    (tmp_path / "search.journal.artifacts").rename(moved)
    with pytest.raises(DigitwinInputError, match="--artifacts DIR"):
        run_worker(journal, "s", n_trials=2)
    report = run_worker(journal, "s", n_trials=2, artifacts=moved)
    assert report.finished == 2


def test_a_study_not_made_by_a_search_is_refused(tmp_path):
    journal = tmp_path / "other.journal"
    optuna.create_study(study_name="plain", storage=open_storage(journal))
    with pytest.raises(DigitwinInputError, match="not made by a bluesky-digitwin search"):
        run_worker(journal, "plain")


def test_waiting_for_workers_needs_a_shared_storage(data):
    with pytest.raises(DigitwinInputError, match="storage they can all reach"):
        run_search(data, n_trials=2, n_workers=0)


@pytest.mark.slow
def test_a_coordinator_that_trains_nothing_waits_for_a_worker_process(data, tmp_path):
    journal = tmp_path / "search.journal"
    # The worker starts first and waits for the study to exist, as one would on another machine.
    worker_code = (
        "import sys, time\n"
        "from bluesky_digitwin.data import DigitwinInputError\n"
        "from bluesky_digitwin.surrogate.workers import run_worker\n"
        "for _ in range(600):\n"
        "    try:\n"
        "        print(run_worker(sys.argv[1], 'w').trials_run)\n"
        "        break\n"
        "    except DigitwinInputError:\n"
        "        time.sleep(0.2)\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", worker_code, str(journal)],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        result = run_search(data, n_trials=3, n_workers=0, storage=journal, study_name="w", **TINY)
        result.cleanup()
        out, _ = worker.communicate(timeout=120)
    finally:
        worker.kill()
    assert worker.returncode == 0
    assert out.strip() == "3"  # every trial ran in the worker
    assert len(result.best_trials) == 3
    assert {t.user_attrs["worker"]["pid"] for t in result.best_trials} == {worker.pid}


@pytest.mark.slow
def test_a_killed_search_resumes_keeping_its_finished_trials(data, tmp_path):
    """SIGKILL a whole search mid-trial, rerun it: nothing finished is repeated or lost."""
    journal = tmp_path / "search.journal"
    search = subprocess.Popen(
        [sys.executable, "-c", SLOW_SEARCH, str(journal), "resume", "5", "1"],
        cwd=tmp_path,
        env=subprocess_env(),
    )
    try:
        # Two trials finished and a third running: kill it there.
        def two_finished_and_one_running():
            trials = _trials(journal, "resume")
            return sum(t.state.name == "COMPLETE" for t in trials) >= 2 and any(
                t.state.name == "RUNNING" for t in trials
            )

        # Frozen with the trial still running: it may finish between a look and the kill.
        freeze_when(
            search,
            two_finished_and_one_running,
            timeout=240,
            what="two finished trials and a running one",
        )
        os.kill(search.pid, signal.SIGKILL)
        search.wait(timeout=30)
    finally:
        search.kill()
    before = {t.number: t for t in _trials(journal, "resume")}
    finished = {n: t for n, t in before.items() if t.state.name == "COMPLETE"}
    interrupted = [n for n, t in before.items() if t.state.name == "RUNNING"]
    assert len(finished) >= 2 and len(interrupted) == 1

    subprocess.run(
        [sys.executable, "-c", SLOW_SEARCH, str(journal), "resume", "5", "1"],
        cwd=tmp_path,
        env=subprocess_env(),
        check=True,
        timeout=600,
    )
    after = {t.number: t for t in _trials(journal, "resume")}
    # Finished trials are kept as they were, not run again.
    for number, trial in finished.items():
        assert after[number].state.name == "COMPLETE"
        assert after[number].value == trial.value
        assert after[number].params == trial.params
    # The interrupted trial failed and ran again with the same hyperparameters, once.
    (lost,) = interrupted
    assert after[lost].state.name == "FAIL"
    retries = [t for t in after.values() if t.system_attrs.get("failed_trial") == lost]
    assert len(retries) == 1
    # Killed while it was being asked for its hyperparameters, a trial has recorded only some:
    # the retry keeps those and draws the rest.
    assert {k: retries[0].params[k] for k in before[lost].params} == before[lost].params
    assert retries[0].state.name == "COMPLETE"
    # And the search reached its five trials, the failure of the killed one not counted.
    study = optuna.load_study(study_name="resume", storage=open_storage(journal))
    assert count_finished(study) == 5
    assert sum(t.state.name == "COMPLETE" for t in after.values()) == 5


def test_the_workers_of_a_killed_search_stop_too(tmp_path):
    """Spawned workers watch their parent: killing `fit` does not leave them searching."""
    journal = tmp_path / "search.journal"
    search = subprocess.Popen(
        [sys.executable, "-c", SLOW_SEARCH, str(journal), "orphans", "20", "2"],
        cwd=tmp_path,
        env=subprocess_env(),
    )
    try:
        pids = wait_for(
            lambda: (
                {
                    t.user_attrs["worker"]["pid"]
                    for t in _trials(journal, "orphans")
                    if "worker" in t.user_attrs
                }
                - {search.pid}
            ),
            timeout=240,
            what="a trial of the spawned worker",
        )
        os.kill(search.pid, signal.SIGKILL)
        search.wait(timeout=30)
    finally:
        search.kill()
    (worker,) = pids
    wait_for(lambda: not _alive(worker), timeout=30, what="the orphaned worker to exit")


def test_progress_counts_a_retried_failure_once(data, tmp_path):
    """A failed trial that was queued again does not count; its retry does."""
    journal = tmp_path / "search.journal"
    result = run_search(data, n_trials=2, n_workers=1, storage=journal, study_name="c", **TINY)
    result.cleanup()
    study = result.study
    from bluesky_digitwin.surrogate.recovery import retry_trial

    failed = optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL,
        params=study.trials[0].params,
        distributions=study.trials[0].distributions,
    )
    study.add_trial(failed)
    assert count_finished(study) == 3
    retry_trial(study, study.trials[-1])
    assert count_finished(study) == 2  # the failure is retried: it no longer counts
    assert study.trials[-1].state.name == "WAITING"
    assert json.dumps(study.trials[-1].system_attrs)  # Optuna-compatible retry attributes
