"""The loop that runs trials: it stops at the study's number, counting other workers' trials,
and waits for their last ones, running again the trial of a worker that died."""

from __future__ import annotations

import threading
import time

import optuna

from bluesky_digitwin.surrogate import recovery
from bluesky_digitwin.surrogate.recovery import (
    WORKER_ATTR,
    UnclaimedTrials,
    count_finished,
    recover_orphaned_trials,
    worker_identity,
)
from bluesky_digitwin.surrogate.storage import open_storage
from bluesky_digitwin.surrogate.trials import optimize_until, settled_trials


def _study_with(finished: int, running: int, storage=None) -> optuna.Study:
    """A study holding ``finished`` complete trials and ``running`` ones asked but not told,
    as another worker's trials in progress look to this one."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(finished):
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0.0, 1.0))
    for _ in range(running):
        study.ask().suggest_float("x", 0.0, 1.0)
    return study


def _counting_objective(calls: list[int]):
    def objective(trial: optuna.Trial) -> float:
        calls.append(trial.number)
        return trial.suggest_float("x", 0.0, 1.0)

    return objective


def _other_worker_finishes(study: optuna.Study, after: float) -> threading.Thread:
    """Tell the study's running trials, ``after`` seconds from now, as the other worker would."""

    def finish() -> None:
        time.sleep(after)
        for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, 0.5)

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def test_no_trial_starts_when_the_others_running_trials_make_up_the_number():
    study = _study_with(finished=4, running=1)
    other = _other_worker_finishes(study, after=0.5)
    calls: list[int] = []
    optimize_until(study, _counting_objective(calls), n_trials=5, poll=0.05)
    other.join()
    assert calls == []
    # It returned once the other worker's trial had finished, not before.
    assert count_finished(study) == 5


def test_the_last_trial_is_not_run_twice_by_two_workers():
    # Three finished, one running elsewhere: this worker runs the fifth and stops, rather than
    # going on until five are finished (which would make six with the other worker's).
    study = _study_with(finished=3, running=1)
    other = _other_worker_finishes(study, after=0.5)
    calls: list[int] = []
    optimize_until(study, _counting_objective(calls), n_trials=5, poll=0.05)
    other.join()
    assert len(calls) == 1
    assert len(study.trials) == 5


def test_a_lone_worker_runs_up_to_the_number():
    study = _study_with(finished=2, running=0)
    calls: list[int] = []
    optimize_until(study, _counting_objective(calls), n_trials=5)
    assert len(calls) == 3


def test_the_trial_of_a_worker_that_died_is_run_again_here(tmp_path):
    # Heartbeats every second: a trial whose worker stopped beating is stale after two.
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=1)
    study = _study_with(finished=4, running=1, storage=storage)
    (dead,) = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    # Its worker beat once, then died (SIGKILL: nothing told the study).
    storage.record_heartbeat(dead._trial_id)
    calls: list[int] = []
    optimize_until(study, _counting_objective(calls), n_trials=5, poll=0.1)
    # This worker did not leave with the dead one's trial counted as running: it failed it and
    # ran the retry, with the same parameters, and the search has its five trials.
    assert len(calls) == 1
    trials = study.get_trials()
    assert trials[dead.number].state == optuna.trial.TrialState.FAIL
    retry = trials[calls[0]]
    assert retry.system_attrs.get("failed_trial") == dead.number
    assert retry.params == dead.params
    assert count_finished(study) == 5


def test_a_trial_whose_worker_died_before_claiming_it_is_run_again(tmp_path, monkeypatch):
    # Killed between Optuna creating the trial and the objective's first line: the trial runs
    # for ever with no process recorded, and on the journal no heartbeat either. Before, the
    # rerun of such a search waited on it without end.
    monkeypatch.setattr(recovery, "CLAIM_GRACE", 0.3)
    study = _study_with(finished=4, running=1, storage=open_storage(tmp_path / "s.journal"))
    (dead,) = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    calls: list[int] = []
    search = threading.Thread(
        target=optimize_until,
        args=(study, _counting_objective(calls), 5),
        kwargs={"poll": 0.05},
        daemon=True,
    )
    search.start()
    search.join(timeout=60)
    assert not search.is_alive(), "the search waited on the unclaimed trial"
    assert len(calls) == 1
    trials = study.get_trials()
    assert trials[dead.number].state == optuna.trial.TrialState.FAIL
    assert trials[calls[0]].system_attrs.get("failed_trial") == dead.number
    assert count_finished(study) == 5


def test_an_unclaimed_trial_counts_as_lost_only_after_the_grace(tmp_path):
    study = _study_with(finished=0, running=1, storage=open_storage(tmp_path / "s.journal"))
    unclaimed = UnclaimedTrials(grace=0.3)
    # Just created: its worker may be about to claim it.
    assert recover_orphaned_trials(study, unclaimed) == []
    assert recover_orphaned_trials(study) == []  # nothing watched, nothing recovered
    time.sleep(0.4)
    assert recover_orphaned_trials(study, unclaimed) == [0]


def test_a_claimed_trial_of_a_live_process_is_left_running(tmp_path):
    study = _study_with(finished=0, running=1, storage=open_storage(tmp_path / "s.journal"))
    (trial,) = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    study._storage.set_trial_user_attr(trial._trial_id, WORKER_ATTR, worker_identity(0))
    assert recover_orphaned_trials(study, UnclaimedTrials(grace=0.0)) == []
    assert study.get_trials()[0].state == optuna.trial.TrialState.RUNNING


def test_the_search_waits_out_an_unclaimed_trials_grace_once_not_again_after_it(tmp_path):
    # The search's number is reached while a trial nobody claimed still runs (its worker died
    # as Optuna created it): the wait for the last trials goes on with the same tracker.
    study = _study_with(finished=3, running=1, storage=open_storage(tmp_path / "s.journal"))
    (dead,) = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    unclaimed = UnclaimedTrials(grace=2.0)
    optimize_until(study, _counting_objective([]), n_trials=3, poll=0.05, unclaimed=unclaimed)
    time.sleep(2.1)  # the grace, spent between the search and the wait for its last trials
    start = time.monotonic()
    settled_trials(study, poll=0.05, unclaimed=unclaimed)
    assert time.monotonic() - start < 1.0  # a new tracker would wait 2 s more
    assert study.get_trials()[dead.number].state == optuna.trial.TrialState.FAIL
