"""The loop that runs trials: it stops at the study's number, counting other workers' trials."""

from __future__ import annotations

import optuna

from bluesky_digitwin.surrogate.trials import optimize_until


def _study_with(finished: int, running: int) -> optuna.Study:
    """A study holding ``finished`` complete trials and ``running`` ones asked but not told,
    as another worker's trials in progress look to this one."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
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


def test_no_trial_starts_when_the_others_running_trials_make_up_the_number():
    study = _study_with(finished=4, running=1)
    calls: list[int] = []
    optimize_until(study, _counting_objective(calls), n_trials=5)
    assert calls == []


def test_the_last_trial_is_not_run_twice_by_two_workers():
    # Three finished, one running elsewhere: this worker runs the fifth and stops, rather than
    # going on until five are finished (which would make six with the other worker's).
    study = _study_with(finished=3, running=1)
    calls: list[int] = []
    optimize_until(study, _counting_objective(calls), n_trials=5)
    assert len(calls) == 1
    assert len(study.trials) == 5


def test_a_lone_worker_runs_up_to_the_number():
    study = _study_with(finished=2, running=0)
    calls: list[int] = []
    optimize_until(study, _counting_objective(calls), n_trials=5)
    assert len(calls) == 3
